"""parse(render(model)) == model, over models generated from the keyword tables."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keepalived_py.config.diag import Level
from keepalived_py.config.keywords import ROOT
from keepalived_py.config.model import Node
from keepalived_py.config.parser import parse
from keepalived_py.config.render import render
from keepalived_py.config.schema import (
    Address,
    BlockSpec,
    Choice,
    Ctx,
    Decimal,
    Flag,
    Int,
    Invalid,
    Kw,
    OptBool,
    Str,
    Words,
)

# Plain words: what a name, a path or a script can be.  keepalived.conf has no
# way to write a double quote inside a word, and "$name" would be expanded.
WORD = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126,
                                      exclude_characters='"$\\'),
               min_size=1, max_size=12)
SPACED = st.builds(lambda a, b: f"{a} {b}", WORD, WORD)
ADDRESSES = st.one_of(
    st.integers(0, 2**17 - 1).map(lambda i: str(ipaddress.ip_address("198.18.0.0") + i)),
    st.integers(0, 2**16).map(lambda i: str(ipaddress.ip_address("2001:db8::") + i)))
def _not_a_brace(value: object) -> bool:
    first = value[0] if isinstance(value, tuple) and value else value
    return str(first).split(" ")[0] not in ("{", "}")


# Words that the structured value types look for, so that generated lines parse.
VOCABULARY = st.one_of(
    WORD, ADDRESSES, ADDRESSES.map(lambda a: a + ("/24" if ":" not in a else "/64")),
    st.sampled_from(["dev", "lo", "eth0", "weight", "reverse", "scope", "link", "label",
                     "lo:1", "brd", "table", "via", "src", "from", "to", "metric", "root",
                     "user", "nobody", "1", "10", "-10", "100", "0", "on", "off", "tcp",
                     "udp", "80", "443", "min_ttl", "max_ttl", "no_track", "inet6", "/bin/true"]),
    st.integers(-300, 70000).map(str))


def _ctx() -> Ctx:
    def report(level: Level, msg: str) -> None:
        if level > Level.OK and level is not Level.DEPRECATED:
            raise Invalid(msg)
    return Ctx(report, "generated")


def _parsed(arg: Any, words: list[str]) -> Any:
    try:
        return arg.parse(words, _ctx())
    except Invalid:
        return None


def value_strategy(arg: Any) -> st.SearchStrategy[Any]:
    if isinstance(arg, Flag):
        return st.just(True)
    if isinstance(arg, OptBool):
        return st.booleans()
    if isinstance(arg, Int):
        return st.integers(arg.lo, arg.hi)
    if isinstance(arg, Decimal):
        scale = 10 ** arg.digits
        return st.integers(int(arg.lo * scale), int(arg.hi * scale)).map(
            lambda i: round(i / scale, arg.digits))
    if isinstance(arg, Choice):
        return st.sampled_from(arg.options)
    if isinstance(arg, Address):
        return ADDRESSES
    if isinstance(arg, Str):
        return st.one_of(WORD, SPACED)
    if isinstance(arg, Words) and arg.check is None:
        top = arg.max if arg.max is not None else arg.min + 4
        return st.lists(st.one_of(WORD, SPACED), min_size=arg.min, max_size=top).map(tuple)
    # A structured type: generate likely words, keep what the type accepts.
    return st.lists(VOCABULARY, min_size=0, max_size=8).map(
        lambda words: _parsed(arg, words)).filter(lambda v: v is not None)


def kw_value(kw: Kw, depth: int) -> st.SearchStrategy[Any]:
    if kw.block is not None:
        one = node_strategy(kw.block, depth + 1)
        return st.lists(one, min_size=1, max_size=2) if kw.repeat else one
    if kw.lines is not None:
        # a block's line cannot start with a brace: keepalived would take it for one
        line = value_strategy(kw.lines).filter(_not_a_brace)
        return st.lists(line, min_size=0, max_size=3).map(tuple)
    one = value_strategy(kw.arg)
    return st.lists(one, min_size=1, max_size=2) if kw.repeat else one


@st.composite
def node_strategy(draw: st.DrawFn, spec: BlockSpec, depth: int = 0) -> Node:
    head = draw(value_strategy(spec.head)) if spec.head is not None else None
    if spec.entries is not None:
        entries = draw(st.lists(value_strategy(spec.entries), min_size=1, max_size=3))
        return Node(spec, head, {"entries": entries})
    keywords = [kw for kw in spec.keywords if depth < 3 or kw.block is None]
    chosen = draw(st.lists(st.sampled_from(keywords), max_size=6, unique_by=lambda k: k.name)) \
        if keywords else []
    values = {kw.name: draw(kw_value(kw, depth)) for kw in chosen}
    return Node(spec, head, values)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(node_strategy(ROOT))
def test_parse_of_render_is_identity(model: Node) -> None:
    text = render(model)
    again = parse("generated.conf", text=text, config_id="x")
    errors = [str(d) for d in again.diags if d.level > Level.OK]
    assert again.root == model, text
    assert render(again.root) == text
    assert not errors, text


def test_render_is_deterministic() -> None:
    text = ("global_defs {\n    router_id r1\n}\n"
            "vrrp_instance VI_1 {\n    state BACKUP\n    priority 150\n}\n")
    model = parse("a.conf", text=text).root
    assert render(model) == render(parse("b.conf", text=render(model)).root) == text
