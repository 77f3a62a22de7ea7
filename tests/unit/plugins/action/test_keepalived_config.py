"""keepalived_config on the controller: variables to text, the line map, named errors.

The parser and checks are the agent's own.  The end-to-end tests run the action
with its module executed in this process (instead of over a connection) against
a file in a temporary directory and the agent's real command line, so every
step but the transport is the real one.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest
from ansible_collections.keepalived_py.ha.agent.config import parse
from ansible_collections.keepalived_py.ha.agent.config.keywords import ROOT
from ansible_collections.keepalived_py.ha.agent.config.render import render
from ansible_collections.keepalived_py.ha.plugins.action import keepalived_config as action
from ansible_collections.keepalived_py.ha.plugins.module_utils.keepalived_config import (
    ARGUMENT_SPEC,
    HEADER,
)
from ansible_collections.keepalived_py.ha.plugins.modules import keepalived_config as module

from ..modules.agent_double import run_module

DEST = "/etc/keepalived/keepalived.conf"
IFACE = next((name for _i, name in socket.if_nameindex() if name != "lo"), None)


def args(**given: Any) -> dict[str, Any]:
    """Task arguments with the defaults filled in, as validate_argument_spec gives them."""
    full = {name: spec.get("default") for name, spec in ARGUMENT_SPEC.items()}
    full["dest"] = DEST
    full.update(given)
    return full


def instance(name: str = "VI_1", **keywords: Any) -> dict[str, Any]:
    body = {"name": name, "state": "MASTER", "interface": "eth0", "virtual_router_id": 51,
            "priority": 150, "advert_int": 1,
            "authentication": {"auth_type": "PASS", "auth_pass": "s3cret"},
            "virtual_ipaddress": ["192.0.2.10/24 dev eth0"]}
    body.update(keywords)
    return {k: v for k, v in body.items() if v is not None}


def generate(**given: Any) -> action.Generated:
    return action.Generator().sections(given)


def errors_of(**given: Any) -> list[str]:
    with pytest.raises(action.ConfigErrors) as failure:
        action.render_config(args(**given), "lb1")
    return failure.value.errors


# -- the line map --------------------------------------------------------------------------

def test_every_line_is_named_by_its_variable():
    generated = generate(
        global_defs={"router_id": "lb1", "enable_script_security": True},
        scripts=[{"name": "chk_haproxy", "script": "killall -0 haproxy", "weight": [-20]}],
        instances=[instance(unicast_peer=["10.0.0.2"], track_script=["chk_haproxy"],
                            nopreempt=True)])
    assert list(zip(generated.lines, generated.paths, strict=True)) == [
        ("global_defs {", "global_defs"),
        ("    router_id lb1", "global_defs.router_id"),
        ("    enable_script_security", "global_defs.enable_script_security"),
        ("}", "global_defs"),
        ("vrrp_script chk_haproxy {", "scripts[0]"),
        ('    script "killall -0 haproxy"', "scripts[0].script"),
        ("    weight -20", "scripts[0].weight"),
        ("}", "scripts[0]"),
        ("vrrp_instance VI_1 {", "instances[0]"),
        ("    state MASTER", "instances[0].state"),
        ("    interface eth0", "instances[0].interface"),
        ("    virtual_router_id 51", "instances[0].virtual_router_id"),
        ("    priority 150", "instances[0].priority"),
        ("    advert_int 1", "instances[0].advert_int"),
        ("    authentication {", "instances[0].authentication"),
        ("        auth_type PASS", "instances[0].authentication.auth_type"),
        ("        auth_pass s3cret", "instances[0].authentication.auth_pass"),
        ("    }", "instances[0].authentication"),
        ("    virtual_ipaddress {", "instances[0].virtual_ipaddress"),
        ("        192.0.2.10/24 dev eth0", "instances[0].virtual_ipaddress[0]"),
        ("    }", "instances[0].virtual_ipaddress"),
        ("    unicast_peer {", "instances[0].unicast_peer"),
        ("        10.0.0.2", "instances[0].unicast_peer[0]"),
        ("    }", "instances[0].unicast_peer"),
        ("    track_script {", "instances[0].track_script"),
        ("        chk_haproxy", "instances[0].track_script[0]"),
        ("    }", "instances[0].track_script"),
        ("    nopreempt", "instances[0].nopreempt"),
        ("}", "instances[0]"),
    ]
    assert generated.problems == []


@pytest.mark.parametrize(("keywords", "lines"), [
    # true: the bare keyword; false: a flag is left out...
    ({"nopreempt": True}, ["nopreempt"]),
    ({"nopreempt": False}, []),
    # ...but a keyword reading a boolean says false (an instance's smtp_alert false
    # overrides the global one; left out, it would inherit it)
    ({"smtp_alert": False}, ["smtp_alert false"]),
    ({"smtp_alert": True}, ["smtp_alert"]),
    # true for a keyword that is no boolean: written, and the parser will say why
    ({"priority": True}, ["priority true"]),
    ({"nopreempt": None}, []),
    # a string is one word, quoted when it must be; numbers as written
    ({"notify_master": "/usr/local/bin/notify master"},
     ['notify_master "/usr/local/bin/notify master"']),
    ({"advert_int": 0.5}, ["advert_int 0.5"]),
    # a list for a one-line keyword: its words
    ({"notify_master": ["/usr/local/bin/notify", "root"]},
     ["notify_master /usr/local/bin/notify root"]),
    # a list for a block of lines: string items split at blanks, list items as words
    ({"virtual_routes": ["192.0.2.0/24 via 10.0.0.1", ["198.51.100.0/24", "dev", "eth1"]]},
     ["virtual_routes {", "    192.0.2.0/24 via 10.0.0.1", "    198.51.100.0/24 dev eth1",
      "}"]),
    ({"virtual_ipaddress": []}, ["virtual_ipaddress {", "}"]),
    # a word with a blank, a comment or brace character is quoted
    ({"track_interface": [["eth1", "weight", "-10"]], "use_vmac": "vrrp#51"},
     ["track_interface {", "    eth1 weight -10", "}", 'use_vmac "vrrp#51"']),
])
def test_mapping_rules(keywords, lines):
    generated = generate(instances=[{"name": "VI_1", **keywords}])
    assert [line.strip() for line in generated.lines[1:-1]] == [x.strip() for x in lines]
    assert generated.problems == []


def test_a_list_of_dicts_under_a_repeating_block_is_one_named_block_each():
    # room for virtual_servers: real_server blocks inside a virtual_server
    gen = action.Generator()
    gen.entry(0, "virtual_server", [{"name": "192.0.2.1 80", "lvs_sched": "rr",
                                     "real_server": [{"name": ["10.0.0.1", 80], "weight": 2}]}],
              ROOT, "virtual_servers")
    assert list(zip(gen.out.lines, gen.out.paths, strict=True)) == [
        ("virtual_server 192.0.2.1 80 {", "virtual_servers[0]"),
        ("    lvs_sched rr", "virtual_servers[0].lvs_sched"),
        ("    real_server 10.0.0.1 80 {", "virtual_servers[0].real_server[0]"),
        ("        weight 2", "virtual_servers[0].real_server[0].weight"),
        ("    }", "virtual_servers[0].real_server[0]"),
        ("}", "virtual_servers[0]"),
    ]


def test_virtual_servers_with_their_checkers() -> None:
    rendering = action.render_config(args(virtual_servers=[{
        "name": "192.0.2.10 80", "lb_algo": "wrr", "lb_kind": "NAT", "protocol": "TCP",
        "real_server": [
            {"name": "192.0.2.21 8080", "weight": 2,
             "HTTP_GET": [{"url": [{"path": "/health", "status_code": 200}],
                           "connect_timeout": 3}]},
            {"name": "192.0.2.22 8080", "TCP_CHECK": [{"connect_timeout": 3}]}]}]), "lb1")
    body = rendering.text.split("\n", 1)[1]
    assert body == """virtual_server 192.0.2.10 80 {
    lvs_sched wrr
    lvs_method NAT
    protocol TCP
    real_server 192.0.2.21 8080 {
        weight 2
        HTTP_GET {
            url {
                path /health
                status_code 200
            }
            connect_timeout 3
        }
    }
    real_server 192.0.2.22 8080 {
        TCP_CHECK {
            connect_timeout 3
        }
    }
}
"""
    assert rendering.not_acted == []
    gen = action.Generator()
    gen.sections(args(virtual_servers=[{"name": "192.0.2.10 80", "real_server": [
        {"name": "192.0.2.21 80", "TCP_CHECK": [{"connect_timeout": 3}]}]}]))
    assert ("            connect_timeout 3",
            "virtual_servers[0].real_server[0].TCP_CHECK[0].connect_timeout") in \
        list(zip(gen.out.lines, gen.out.paths, strict=True))


@pytest.mark.parametrize(("given", "problem"), [
    ({"instances": [{"state": "MASTER"}]}, "instances[0].name: missing"),
    ({"instances": [{"name": "VI_1", "bad key": 1}]}, "instances[0].bad key: not a keepalived"),
    ({"instances": [{"name": "VI_1", "$X=": 1}]}, "instances[0].$X=: not a keepalived keyword"),
    ({"global_defs": {"include": "/etc/keepalived/other.conf"}},
     "global_defs.include: include is not supported"),
    ({"instances": [{"name": "VI_1", "notify": 'say "hi"'}]},
     "instances[0].notify: a word cannot contain a double quote"),
    ({"instances": [{"name": "VI_1", "virtual_ipaddress": [{"ip": 1}]}]},
     "instances[0].virtual_ipaddress[0]: must be a string"),
    ({"instances": [{"name": "VI_1", "virtual_ipaddress": ["", "192.0.2.1"]}]},
     "instances[0].virtual_ipaddress[0]: an item must be a line"),
    ({"instances": [{"name": "VI_1", "unicast_src_ip": ["10.0.0.1", None]}]},
     "instances[0].unicast_src_ip[1]: must be a string"),
])
def test_what_cannot_be_written_is_named(given, problem):
    problems = generate(**given).problems
    assert any(p.startswith(problem) for p in problems), problems
    assert any(e.startswith(problem) for e in errors_of(**given))


# -- errors named ----------------------------------------------------------------------------

def test_parser_errors_name_the_variable():
    errors = errors_of(instances=[instance(), instance("VI_2", virtual_router_id=52,
                                                       advert_int="abc", priority=300,
                                                       advert_intt=2)])
    assert errors == [
        "instances[1].priority: number '300' outside range [1, 255]",
        "instances[1].priority: (VI_2) Priority not valid! must be between 1 & 255. "
        "Using default 100",
        "instances[1].advert_int: invalid number 'abc'",
        "instances[1].advert_int: (VI_2) Advert interval (abc) not valid! Must be > 0 - ignoring",
        "instances[1].advert_intt: Unknown keyword 'advert_intt'",
    ]


def test_a_message_without_a_line_is_named_by_its_block():
    # keepalived says "(VI_2) the virtual router id must be set" with no line
    errors = errors_of(instances=[instance(), instance("VI_2", virtual_router_id=None)])
    assert errors == ["instances[1]: (VI_2) the virtual router id must be set"]


@pytest.mark.parametrize(("given", "error"), [
    ({"instances": [instance()], "sync_groups": [{"name": "G1", "group": ["VI_1"]}]},
     "sync_groups[0]: Sync group G1 has only 1 virtual router(s) - this probably isn't what "
     "you want"),
    ({"instances": [instance(track_interface=["eth0"])]},
     "instances[0].track_interface: (VI_1) Ignoring track_interface eth0 since own interface"),
    ({"instances": [instance(interface="lo")]},
     "instances[0].interface: (VI_1) Unknown interface!"),
    ({"content": "virtual_server 192.0.2.1 80 {\n    protocol TCP\n}\n"},
     "line 1 (virtual_server 192.0.2.1 80 {): Virtual server [192.0.2.1]:tcp:80 has no real "
     "servers - ignoring"),
    ({"content": "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n"
                 "    virtual_ipaddress {\n        192.0.2.10/24\n    }\n}\n"
                 "vrrp_sync_group G1 {\n    group {\n        VI_1\n    }\n}\n"},
     "line 8 (vrrp_sync_group G1 {): Sync group G1 has only 1 virtual router(s) - this "
     "probably isn't what you want"),
])
def test_a_message_without_a_line_is_named_by_what_it_is_about(given, error):
    assert errors_of(**given) == [error]


def test_script_security_warnings_name_the_scripts():
    rendering = action.render_config(args(
        global_defs={"startup_script": "/usr/local/bin/up"},
        scripts=[{"name": "chk", "script": "/usr/local/bin/chk"}],
        instances=[instance(track_script=["chk"], notify_master="/usr/local/bin/notify")]),
        "lb1")
    assert rendering.warnings[:2] == [
        "global_defs.startup_script: SECURITY VIOLATION - start/shutdown scripts are being "
        "executed but script_security not enabled.",
        "scripts[0].script, instances[0].notify_master: SECURITY VIOLATION - scripts are being "
        "executed but script_security not enabled."]


def test_host_messages_without_a_line_are_named_too():
    rendering = action.render_config(args(
        global_defs={"enable_script_security": True},
        scripts=[{"name": "chk", "script": "/usr/local/bin/chk"}],
        instances=[instance(track_script=["chk"])]), "lb1")
    assert rendering.name_target_line(None, "Disabling track script chk since not "
                                            "found/accessible") == \
        "scripts[0]: Disabling track script chk since not found/accessible"
    # no script_user: the block it belongs in
    assert rendering.name_target_line(None, "Unable to set default user keepalived_script "
                                            "for script") == \
        "global_defs: Unable to set default user keepalived_script for script"


BAD_VARIABLES = [
    {"instances": [instance(advert_int="abc", priority=300, advert_intt=2)]},
    {"instances": [instance(), instance("VI_2", virtual_router_id=None)]},
    {"instances": [instance(virtual_ipaddress=None, version=3)]},
    {"instances": [instance(unicast_src_ip="10.0.0.1", track_interface=["eth0"],
                            track_script=["nothing"])]},
    {"instances": [instance(interface="lo")]},
    {"instances": [instance()], "sync_groups": [{"name": "G1", "group": ["VI_1"]}]},
    # warnings only
    {"global_defs": {"startup_script": "/bin/up"},
     "scripts": [{"name": "chk", "script": "/bin/chk"}],
     "instances": [instance(unicast_src_ip="10.0.0.1", track_script=["chk"],
                            notify_master="/bin/n")]},
    {"global_defs": {"startup_script": "/bin/up", "vrrp_garp_master_delay": "x"},
     "scripts": [{"name": "chk", "script": "/bin/chk", "weight": "heavy"}],
     "instances": [instance(track_script=["chk"], notify_master="/bin/n",
                            authentication={"auth_type": "PASS", "auth_pass": "123456789"})]},
]
_VARIABLE = re.compile(r"(global_defs|track_files|track_processes|scripts|instances|"
                       r"sync_groups)[.\[:]")


@pytest.mark.parametrize("given", BAD_VARIABLES)
def test_every_message_about_variables_names_one(given):
    try:
        messages = action.render_config(args(**given), "lb1").warnings
    except action.ConfigErrors as failure:
        messages = failure.errors
    messages = [m for m in messages if not m.startswith("read but not acted on")]
    assert messages
    assert [m for m in messages if not _VARIABLE.match(m)] == []


def test_references_are_checked_on_the_controller():
    errors = errors_of(instances=[instance(track_script=["chk_missing"])])
    assert errors == ["instances[0].track_script: (VI_1) track script chk_missing not found, "
                      "ignoring..."]


def test_raw_content_errors_name_the_line():
    text = ("vrrp_instance VI_1 {\n    interface eth0\n    advert_int abc\n"
            "    virtual_router_id 51\n    authentication {\n        auth_pass s3cret123456\n"
            "    }\n    virtual_ipaddress {\n        192.0.2.10/24\n    }\n}\n")
    errors = errors_of(content=text)
    assert errors[0] == "line 3 (advert_int abc): invalid number 'abc'"
    assert "line 6 (auth_pass ********): Truncating auth_pass to 8 characters" in errors
    assert not any("s3cret" in e for e in errors)


@pytest.mark.parametrize(("text", "error"), [
    ("include /etc/keepalived/conf.d/*.conf\n", "line 1: include is not supported"),
    ("@lb1 includer other.conf\n", "line 1: include is not supported"),
    ("global_defs {\n    router_id ${_ENV HOSTNAME}\n}\n", "line 2: ${_ENV} is not supported"),
])
def test_what_reads_the_controller_is_refused(text, error):
    assert errors_of(content=text)[0].startswith(error)


def test_interfaces_users_and_scripts_are_left_to_the_host():
    # none of these exist here; the controller must not fail on them
    rendering = action.render_config(args(
        global_defs={"enable_script_security": True, "script_user": "kpy-nobody-here"},
        scripts=[{"name": "chk", "script": "/nonexistent/check.sh", "user": "kpy-nobody"}],
        instances=[instance(interface="kpy-no-such0", track_interface=["kpy-no-such1"],
                            track_script=["chk"])]), "lb1")
    assert "interface kpy-no-such0" in rendering.text


def test_warnings_are_named_and_do_not_fail():
    rendering = action.render_config(args(
        instances=[instance(unicast_src_ip="10.0.0.1", track_bfd=["bfd1"],
                            auth_hmac={"active_key": 1, "mode": "enforce"})]),
        "lb1")
    assert "instances[0]: (VI_1) A unicast keyword has been specified without any unicast " \
           "peers. Defaulting to multicast. This usage is deprecated - please update your " \
           "configuration." in rendering.warnings
    assert "instances[0].track_bfd" in rendering.not_acted
    # a block listed: its keywords are not listed again
    assert "instances[0].auth_hmac" in rendering.not_acted
    assert not any(n.startswith("instances[0].auth_hmac.") for n in rendering.not_acted)
    assert any(w.startswith("read but not acted on") and "instances[0].auth_hmac" in w
               for w in rendering.warnings)


def test_conditionals_use_the_config_id():
    text = ("vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n"
            "@lb1 priority 150\n@^lb1 priority 100\n"
            "    virtual_ipaddress {\n        192.0.2.10/24\n    }\n}\n")
    assert "    priority 150\n" in action.render_config(args(content=text), "lb1").text
    assert "    priority 100\n" in action.render_config(args(content=text), "lb2").text


def test_config_id_defaults_to_the_gathered_host_name():
    assert action.default_config_id({"ansible_facts": {"hostname": "lb1"},
                                     "inventory_hostname_short": "x"}) == "lb1"
    assert action.default_config_id({"inventory_hostname_short": "lb2"}) == "lb2"


# -- canonical text ----------------------------------------------------------------------------

CONFIGS = [
    {"instances": [instance()]},
    {"global_defs": {"router_id": "lb1", "vrrp_garp_master_delay": 5,
                     "notification_email": ["ops@example.com"], "smtp_server": ["192.0.2.25", 25],
                     "vrrp_mcast_group4": "224.0.0.18"},
     "scripts": [{"name": "chk", "script": "killall -0 haproxy", "interval": 2, "fall": 2,
                  "rise": 2, "weight": [-20, "reverse"]}],
     "instances": [instance(track_script=["chk weight 10"], nopreempt=True, preempt_delay=30,
                            unicast_src_ip="10.0.0.1", unicast_peer=["10.0.0.2", "10.0.0.3"],
                            virtual_routes=["198.51.100.0/24 via 192.0.2.1 dev eth0"],
                            track_interface=["eth1 weight -10"], smtp_alert=False),
                   instance("VI_6", virtual_router_id=61, version=3, advert_int=0.05,
                            authentication=None,
                            virtual_ipaddress=["2001:db8::10/64 dev eth0"])],
     "sync_groups": [{"name": "G1", "group": ["VI_1", "VI_6"]}]},
    {"content": "vrrp_instance VI_1 {\n  interface eth0 ; comment\n  virtual_router_id 51\n"
                "  virtual_ipaddress {\n    192.0.2.10/24 # a comment\n  }\n}\n"
                "$PEERS=10.0.0.2\n"},
]


@pytest.mark.parametrize("given", CONFIGS)
def test_canonical_text_reads_back_as_the_same_model(given):
    rendering = action.render_config(args(**given), "lb1")
    assert rendering.text.startswith(HEADER)
    canonical = rendering.text[len(HEADER):]
    model = parse(DEST, text=canonical).root
    assert parse(DEST, text=render(model)).root == model
    assert render(model) == canonical
    # equal input, equal bytes
    assert action.render_config(args(**given), "lb1").text == rendering.text


# -- $ in values ---------------------------------------------------------------------------

EXPANDED = ("cannot be written as keepalived.conf: keepalived would replace a $NAME or ${NAME} "
            "in it (its definitions, such as $_PWD or ${_RANDOM}, are expanded even inside "
            "quotes, and $ has no escape)")


def read_back(given: dict[str, Any]) -> Any:
    """The model the agent reads from the file the action would write."""
    text = action.render_config(args(**given), "lb1").text
    return parse(DEST, text=text[len(HEADER):]).root


def test_keepalived_expands_definitions_inside_quotes():
    """Why some values are refused: the reader replaces them, quotes or not."""
    root = parse(DEST, text='vrrp_script chk {\n    script "x $_PWD y"\n}\n').root
    assert root.blocks("vrrp_script")[0].values["script"] == ("x /etc/keepalived y",)


@pytest.mark.parametrize("value", [
    "a$b", "$", "a$", "x $y z", "${undefined}", "$_PWDx", "$_PWD/check.sh", "cost $5",
    # a use must be followed by a blank, a comma, a parenthesis or the end of the line:
    # quoted, a quote follows it
    "$_RANDOM", "a $_INSTANCE", "p$_ENV",
])
def test_a_dollar_reaches_the_agent_unchanged(value):
    root = read_back({"scripts": [{"name": "chk$a", "script": value}],
                      "instances": [instance(notify_master=value, track_script=["chk$a"])]})
    [script] = root.blocks("vrrp_script")
    assert str(script.head) == "chk$a" and script.values["script"] == (value,)
    assert root.blocks("vrrp_instance")[0].values["notify_master"] == (value,)


@pytest.mark.parametrize("password", ["a$b", "$", "$_RANDOM", "${x}", "p$_PWDx", "$_ENV/"])
def test_a_dollar_in_a_password_reaches_the_agent_unchanged(password):
    root = read_back({"instances": [instance(authentication={"auth_type": "PASS",
                                                             "auth_pass": password})]})
    auth = root.blocks("vrrp_instance")[0].values["authentication"]
    assert auth.values["auth_pass"] == password


@pytest.mark.parametrize("value", [
    "x $_PWD y", "a${_PWD}", "x ${_RANDOM} y", "${_RANDOM 1 5}", "${_HASH}x", "${_BANG}",
    "a $_INSTANCE b", "${_ENV HOME}",
])
def test_a_value_keepalived_would_change_is_refused(value):
    errors = errors_of(scripts=[{"name": "chk", "script": value}],
                       instances=[instance(notify_master=value, track_script=["chk"],
                                           authentication={"auth_type": "PASS",
                                                           "auth_pass": value})])
    assert sorted(errors) == [f"{path}: {EXPANDED}" for path in (
        "instances[0].authentication.auth_pass", "instances[0].notify_master",
        "scripts[0].script")]
    assert value not in " ".join(errors)        # a password is never shown


def test_names_and_line_items_are_checked_too():
    errors = errors_of(scripts=[{"name": "chk${_INSTANCE}", "script": "/bin/true"}],
                       instances=[instance(unicast_peer=["10.0.0.2", "10.0.0.3 ${_PWD}"])])
    assert errors == [f"scripts[0].name: {EXPANDED}",
                      f"instances[0].unicast_peer[1]: {EXPANDED}"]


def test_secrets_stay_out_of_what_is_shown():
    rendering = action.render_config(args(instances=[instance()]), "lb1")
    assert "auth_pass s3cret" in rendering.text          # written as it is...
    assert "s3cret" not in json.dumps([rendering.warnings, rendering.not_acted])


# -- the host's verdict, named ----------------------------------------------------------------

def test_host_errors_on_canonical_lines_name_the_variable(agent, workdir, capsys):
    """A link missing on the host: the agent there says canonical line N, we say which
    variable.  Generated and canonical texts differ (track_interface gains its
    weight), so this goes through the model, not through line numbers."""
    given = args(instances=[instance(track_interface=["kpy-no-such1"],
                                     virtual_ipaddress=["192.0.2.10/24",
                                                        "192.0.2.11/24 dev kpy-no-such2"],
                                     interface="kpy-no-such0")])
    rendering = action.render_config(given, "lb1")
    assert "kpy-no-such1 weight 0" in rendering.text
    dest = workdir / "keepalived.conf"
    result = run_module(module.main, {"content": rendering.text, "dest": str(dest),
                                      "agent": agent}, capsys)
    assert result["failed"] is True
    named = [rendering.name_target_line(d["line"], d["message"])
             for d in result["diagnostics"]]
    assert named == [
        "instances[0].interface: WARNING - interface kpy-no-such0 for vrrp_instance VI_1 "
        "doesn't exist",
        "instances[0].track_interface: (VI_1) tracked interface kpy-no-such1 doesn't exist",
        "instances[0].virtual_ipaddress: WARNING - interface kpy-no-such2 for ip address "
        "192.0.2.11/24 doesn't exist",
        "Non-existent interface specified in configuration",
    ]


def test_host_errors_of_content_name_its_lines():
    text = ("vrrp_instance VI_1 {\n\n    # the link\n    interface kpy-no-such0\n"
            "    virtual_router_id 51\n    virtual_ipaddress {\n\n        192.0.2.10/24\n"
            "    }\n}\n")
    rendering = action.render_config(args(content=text), "lb1")
    # canonical line 2 (file line 3) is "interface ..."; the content has it on line 4
    assert rendering.name_target_line(3, "x") == "line 4 (interface kpy-no-such0): x"
    # an item of content is named by its block's line (items may be far apart there)
    assert rendering.name_target_line(6, "y") == "line 6 (virtual_ipaddress {): y"


# -- the action, end to end (the module in this process) ---------------------------------------

class Host:
    """Runs the action; its module call runs the real module here, on ``workdir``."""

    def __init__(self, workdir: Path, agent: str, capsys: Any) -> None:
        self.dest = workdir / "keepalived.conf"
        self.agent = agent
        self.capsys = capsys
        self.module_calls: list[dict[str, Any]] = []

    def run(self, check_mode: bool = False, diff: bool = False, **given: Any) -> dict:
        task = MagicMock(async_val=0, check_mode=check_mode, diff=diff,
                         action="keepalived_py.ha.keepalived_config",
                         args={"dest": str(self.dest), "agent": self.agent, **given})
        plugin = action.ActionModule(task, MagicMock(), MagicMock(), MagicMock(), MagicMock(),
                                     MagicMock())

        def execute(module_name: str, module_args: dict, task_vars: dict) -> dict:
            assert module_name == "keepalived_py.ha.keepalived_config"
            self.module_calls.append(module_args)
            result = run_module(module.main, module_args, self.capsys, check_mode=check_mode,
                                diff=diff)
            result.pop("rc_exit")
            return result

        plugin._execute_module = execute
        return plugin.run(task_vars={"inventory_hostname_short": "lb1"})


@pytest.fixture
def host(workdir, agent, capsys) -> Host:
    return Host(workdir, agent, capsys)


def variables(**keywords: Any) -> dict[str, Any]:
    if IFACE is None:       # a host without links: no interface checks
        return {"global_defs": {"dynamic_interfaces": True},
                "instances": [instance(**keywords)]}
    return {"instances": [instance(interface=IFACE, virtual_ipaddress=["192.0.2.10/24"],
                                   **keywords)]}


def test_written_then_unchanged(host):
    first = host.run(**variables())
    assert first["changed"] is True and first.get("failed") is not True, first
    assert first["validated"] is True and "diagnostics" not in first
    assert host.dest.read_text().startswith(HEADER)
    second = host.run(**variables())
    assert second["changed"] is False
    assert host.module_calls[0]["content"] == host.module_calls[1]["content"]


def test_check_mode_and_diff(host):
    host.dest.write_text("# old\n")
    result = host.run(check_mode=True, diff=True, return_rendered=True, **variables())
    assert result["changed"] is True and host.dest.read_text() == "# old\n"
    assert result["diff"]["before"] == "# old\n"
    assert "auth_pass ********" in result["diff"]["after"]
    assert result["rendered"] == result["diff"]["after"]
    assert "s3cret" not in json.dumps(result)


def test_errors_fail_before_the_host_is_contacted(host):
    result = host.run(**variables(advert_int="abc"))
    assert result["failed"] is True and result["changed"] is False
    assert "nothing was sent to the host" in result["msg"]
    assert "instances[0].advert_int: invalid number 'abc'" in result["errors"]
    assert host.module_calls == [] and not host.dest.exists()


def test_host_errors_come_back_named(host):
    given = variables()
    given["instances"][0]["track_interface"] = ["kpy-no-such1"]
    given.setdefault("global_defs", {}).pop("dynamic_interfaces", None)
    result = host.run(**given)
    assert result["failed"] is True
    assert result["msg"].startswith("the agent on the host refused the configuration: "
                                    "instances[0].track_interface: (VI_1) tracked interface "
                                    "kpy-no-such1 doesn't exist")
    assert "diagnostics" not in result and not host.dest.exists()


def test_warnings_from_both_sides_are_merged(host):
    result = host.run(**variables(unicast_src_ip="10.0.0.1"))
    assert result.get("failed") is not True, result
    unicast = [w for w in result["warnings"] if "without any unicast peers" in w]
    assert unicast == ["instances[0]: (VI_1) A unicast keyword has been specified without any "
                       "unicast peers. Defaulting to multicast. This usage is deprecated - "
                       "please update your configuration."]


def test_unknown_options_are_refused(host):
    from ansible.errors import AnsibleActionFail
    with pytest.raises(AnsibleActionFail, match="instance"):
        host.run(instance=[{"name": "VI_1"}])


def test_the_agent_options_reach_the_module(host):
    result = host.run(reload=False, namespace="blue", agent_instance="edge",
                      control_socket="/run/x.sock", **variables())
    assert result.get("failed") is not True, result
    call = host.module_calls[0]
    assert (call["namespace"], call["agent_instance"], call["control_socket"]) == (
        "blue", "edge", "/run/x.sock")
