"""The vocabulary for describing keepalived.conf: keywords, their values and blocks.

Every keyword of keepalived 2.2.7 (and the later ones we support) is declared
once, in ``keywords.py``, as a :class:`Kw` whose value type knows how to read
the words after the keyword, check ranges with keepalived's messages, and write
the value back.  The parser, the renderer, the JSON view and the property tests
all work from these declarations: there is no second schema.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .diag import Invalid, Level
from .numbers import INT_MAX, INT_MIN, format_decimal, read_decimal, read_int, to_scaled


class Ctx:
    """What a value type may use while parsing: a way to report."""

    def __init__(self, report: Callable[[Level, str], None], keyword: str,
                 head: Any = None, word: str | None = None) -> None:
        self.report = report
        self.keyword = keyword
        self.head = head                # the name of the nearest named enclosing block
        self.word = word or keyword     # the keyword as written (maybe a deprecated alias)

    def missing(self, words: Sequence[str], position: int) -> Invalid:
        self.report(Level.MISSING_PARAMETER,
                    f"*** Configuration line starting `{self.keyword}` is missing a "
                    f"parameter after keyword `{([self.keyword, *words])[position - 1]}` "
                    f"at word position {position + 1}")
        return Invalid()


# -- value types -------------------------------------------------------------

class Arg:
    """Reads the words after a keyword into a typed value, and writes it back."""

    def parse(self, words: list[str], ctx: Ctx) -> Any:
        raise NotImplementedError

    def render(self, value: Any) -> list[str]:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__.lower()


class Flag(Arg):
    """A bare keyword: present means on."""

    def parse(self, words: list[str], ctx: Ctx) -> bool:
        return True

    def render(self, value: bool) -> list[str]:
        return []


BOOL_WORDS = {"true": True, "on": True, "yes": True, "false": False, "off": False, "no": False}


class OptBool(Arg):
    """``keyword [true|false|on|off|yes|no]``; bare means true."""

    def parse(self, words: list[str], ctx: Ctx) -> bool:
        if not words:
            return True
        if words[0] not in BOOL_WORDS:
            ctx.report(Level.GENERAL_ERROR, f"Invalid value '{words[0]}' for {ctx.keyword}")
            raise Invalid()
        return BOOL_WORDS[words[0]]

    def render(self, value: bool) -> list[str]:
        return [] if value else ["false"]


@dataclass
class Int(Arg):
    """A signed integer (``read_int_strvec``)."""

    lo: int = INT_MIN
    hi: int = INT_MAX

    def parse(self, words: list[str], ctx: Ctx) -> int:
        if not words:
            raise ctx.missing(words, 1)
        return read_int(words[0], self.lo, self.hi, ctx)

    def render(self, value: int) -> list[str]:
        return [str(value)]

    def describe(self) -> str:
        return f"integer {self.lo}..{self.hi}"


@dataclass
class Decimal(Arg):
    """Seconds (or another unit) with a fixed number of decimal places."""

    lo: float = 0
    hi: float = 4294.967295
    digits: int = 6

    def parse(self, words: list[str], ctx: Ctx) -> float:
        if not words:
            raise ctx.missing(words, 1)
        lo, hi = to_scaled(self.lo, self.digits), to_scaled(self.hi, self.digits)
        return read_decimal(words[0], lo, hi, self.digits, ctx) / 10**self.digits

    def render(self, value: float) -> list[str]:
        return [format_decimal(value, self.digits)]

    def describe(self) -> str:
        return f"decimal {self.lo}..{self.hi}"


@dataclass
class Str(Arg):
    """One word."""

    def parse(self, words: list[str], ctx: Ctx) -> str:
        if not words:
            raise ctx.missing(words, 1)
        return words[0]

    def render(self, value: str) -> list[str]:
        return [value]


@dataclass
class Choice(Arg):
    options: tuple[str, ...] = ()
    ignore_case: bool = False

    def parse(self, words: list[str], ctx: Ctx) -> str:
        if not words:
            raise ctx.missing(words, 1)
        option = self.match(words[0])
        if option is None:
            ctx.report(Level.GENERAL_ERROR, f"Invalid {ctx.keyword} '{words[0]}'")
            raise Invalid()
        return option

    def match(self, word: str) -> str | None:
        """The option ``word`` names, in its canonical spelling."""
        for option in self.options:
            if word == option or (self.ignore_case and word.lower() == option.lower()):
                return option
        return None

    def render(self, value: str) -> list[str]:
        return [value]

    def describe(self) -> str:
        return "|".join(self.options)


@dataclass
class Words(Arg):
    """The rest of the line as words, checked by ``check`` if given."""

    min: int = 0
    max: int | None = None
    check: Callable[[list[str], Ctx], None] | None = None

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, ...]:
        if len(words) < self.min:
            raise ctx.missing(words, len(words) + 1)
        if self.max is not None and len(words) > self.max:
            words = words[: self.max]
        if self.check:
            self.check(words, ctx)
        return tuple(words)

    def render(self, value: Sequence[str]) -> list[str]:
        return list(value)

    def describe(self) -> str:
        return "words"


@dataclass
class Script(Arg):
    """``COMMAND [USER [GROUP]]``: a command (one word, quoted if it has spaces) and
    who runs it; ``max_words`` bounds what is kept (keepalived ignores the rest).

    ``missing`` replaces the missing-parameter error when nothing follows the
    keyword ("" says nothing); ``optional`` accepts nothing at all.
    """

    max_words: int = 3
    missing: str | None = None
    optional: bool = False

    def parse(self, words: list[str], ctx: Ctx) -> tuple[str, ...]:
        if not words:
            if self.optional:
                return ()
            if self.missing is None:
                raise ctx.missing(words, 1)
            if self.missing:
                ctx.report(Level.GENERAL_ERROR, self.missing)
            raise Invalid()
        return tuple(words[: self.max_words])

    def render(self, value: Sequence[str]) -> list[str]:
        return list(value)

    def describe(self) -> str:
        return "script [user [group]]"


def check_address(word: str, ctx: Ctx, what: str = "IP address") -> None:
    try:
        if "/" in word:
            ipaddress.ip_interface(word)
        else:
            ipaddress.ip_address(word)
    except ValueError:
        ctx.report(Level.GENERAL_ERROR, f"Invalid {what} '{word}'")
        raise Invalid() from None


@dataclass
class Address(Arg):
    """An IPv4 or IPv6 address, optionally with /prefix when ``prefix``."""

    prefix: bool = False

    def parse(self, words: list[str], ctx: Ctx) -> str:
        if not words:
            raise ctx.missing(words, 1)
        word = words[0]
        if "/" in word and not self.prefix:
            ctx.report(Level.GENERAL_ERROR, f"Invalid IP address '{word}'")
            raise Invalid()
        check_address(word, ctx)
        return word

    def render(self, value: str) -> list[str]:
        return [value]


# -- keywords and blocks -----------------------------------------------------

ENTRIES = "entries"

@dataclass(frozen=True)
class Kw:
    """One keyword.

    ``arg`` reads the words on the keyword's line.  ``block`` makes it open a
    block of keywords (``vrrp_instance NAME { ... }``); ``lines`` makes it open
    a block whose every line is a value (``virtual_ipaddress { ... }``).
    """

    name: str
    arg: Arg = field(default_factory=Flag)
    default: Any = None
    block: BlockSpec | None = None
    lines: Arg | None = None
    repeat: bool = False        # occurrences accumulate instead of replacing
    aliases: tuple[str, ...] = ()
    since: str = "2.2.7"
    acted: bool = False         # the agent acts on it (otherwise: parsed, reported)
    doc: str = ""


@dataclass(frozen=True)
class BlockSpec:
    kind: str
    keywords: tuple[Kw, ...]
    head: Arg | None = None     # words after the block keyword (a name, an address...)
    # A block of value lines rather than keywords (``virtual_server_group NAME``):
    # every line is read by ``entries`` and kept, in order, under ``values["entries"]``.
    entries: Arg | None = None

    def __post_init__(self) -> None:
        table: dict[str, Kw] = {}
        for kw in self.keywords:
            for name in (kw.name, *kw.aliases):
                if name in table:
                    raise ValueError(f"{self.kind}: keyword {name} declared twice")
                table[name] = kw
        object.__setattr__(self, "table", table)

    def acting(self, names: set[str]) -> BlockSpec:
        """This block with ``names`` marked as acted on by the agent."""
        unknown = names - {kw.name for kw in self.keywords}
        if unknown:
            raise ValueError(f"{self.kind}: no keyword {', '.join(sorted(unknown))}")
        keywords = tuple(replace(kw, acted=True) if kw.name in names else kw
                         for kw in self.keywords)
        return BlockSpec(self.kind, keywords, self.head, self.entries)

    def acting_all(self, but: dict[str, set[str]] | None = None) -> BlockSpec:
        """This block and every block inside it with all keywords marked as acted
        on, except ``but[kind]`` (names of keywords; a block keyword named there is
        left, with everything inside it, as it was)."""
        skip = (but or {}).get(self.kind, set())
        keywords = []
        for kw in self.keywords:
            if kw.name in skip:
                keywords.append(kw)
                continue
            block = kw.block.acting_all(but) if kw.block is not None else None
            keywords.append(replace(kw, acted=True, block=block))
        return replace(self, keywords=tuple(keywords))

    def lookup(self, word: str) -> Kw | None:
        return self.table.get(word)  # type: ignore[attr-defined]

    def keyword(self, name: str) -> Kw:
        if self.entries is not None and name == ENTRIES:
            return Kw(ENTRIES, arg=self.entries, repeat=True)
        kw = self.lookup(name)
        if kw is None:
            raise KeyError(f"{self.kind} has no keyword {name}")
        return kw
