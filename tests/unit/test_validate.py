"""The checks after reading: the ones only the machine that runs the file can make."""

from __future__ import annotations

import pytest
from keepalived_py.config import parse, validate
from keepalived_py.config.diag import Level

MISSING_USER = "kpy-no-such-user"
MISSING_SCRIPT = "/nonexistent/kpy-check.sh"


def checked(text: str, host_checks: bool) -> list[tuple[Level, str]]:
    result = parse("t.conf", text=text)
    assert not list(result.diags), list(result.diags)
    validate(result, interfaces={"eth0"}, host_checks=host_checks)
    return [(d.level, d.message) for d in result.diags]


def config(script: str = MISSING_SCRIPT, user: str = MISSING_USER, global_user: str = "",
           security: bool = True) -> str:
    defs = "".join(["    enable_script_security\n" if security else "",
                    f"    script_user {global_user}\n" if global_user else ""])
    return (f"global_defs {{\n{defs}}}\n"
            f"vrrp_script chk {{\n    script \"{script}\"\n    user {user}\n}}\n"
            "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n"
            "    track_script {\n        chk\n    }\n"
            "    virtual_ipaddress {\n        192.0.2.10/24\n    }\n}\n")


def errors(diags: list[tuple[Level, str]]) -> list[str]:
    return [message for level, message in diags if Level.OK < level < Level.WARNING]


def test_a_missing_script_user_is_an_error_here_and_not_for_another_machine() -> None:
    here = errors(checked(config(), host_checks=True))
    assert here == [f"Unable to set uid/gid for script '{MISSING_SCRIPT}'",
                    "(VI_1) track script chk not found, ignoring..."]
    assert errors(checked(config(), host_checks=False)) == []


def test_a_missing_script_file_is_an_error_here_and_not_for_another_machine() -> None:
    here = errors(checked(config(user="root"), host_checks=True))
    assert here == ["Disabling track script chk since not found/accessible"]
    assert errors(checked(config(user="root"), host_checks=False)) == []


def test_a_missing_global_script_user() -> None:
    text = config(user="root", script="/bin/true", global_user=MISSING_USER)
    assert errors(checked(text, host_checks=True)) == ["Error setting global script uid/gid"]
    assert errors(checked(text, host_checks=False)) == []


@pytest.mark.parametrize("host_checks", [True, False])
def test_script_security_is_judged_as_on_the_machine_running_the_file(host_checks) -> None:
    """Taken as present, a script runs: without enable_script_security that is the same
    security warning the target will give."""
    text = config(user="root", script=MISSING_SCRIPT if not host_checks else "/bin/true",
                  security=False)
    assert (Level.SECURITY_ERROR, "SECURITY VIOLATION - scripts are being executed but "
            "script_security not enabled.") in checked(text, host_checks)
