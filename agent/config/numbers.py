"""keepalived 2.2.7's number readers (lib/parser.c), as in config-test mode.

keepalived reads numbers with C's ``strtoul``/``strtol`` and reports problems
with messages of its own.  Every value type reads its numbers here, so that a
word means the same number, with the same complaint, in every keyword.

The readers report keepalived's message through ``ctx`` and raise
:class:`Invalid`; the value type then adds the keyword's own follow-up message.
``or_none`` is for the few callers that carry on after a bad number.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction
from functools import cache
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from .diag import Invalid, Level

if TYPE_CHECKING:
    from .schema import Ctx

INT_MIN = -(2**31)
INT_MAX = 2**31 - 1
UINT_MAX = 2**32 - 1
ULONG_MAX = 2**64 - 1           # keepalived's reference builds are 64-bit
WHITE_SPACE = " \t\n\v\f\r"     # C's isspace(), and keepalived's WHITE_SPACE
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"

P = ParamSpec("P")
T = TypeVar("T")


# -- the C library -------------------------------------------------------------

@cache
def _digit_run(base: int) -> re.Pattern[str]:
    """ASCII digits of ``base`` (str.isdigit would take other scripts' digits too)."""
    return re.compile(f"[{DIGITS[:base]}{DIGITS[10:base].upper()}]*")


def _strto(text: str, base: int) -> tuple[bool, int, str] | None:
    """What ``strtoul`` and ``strtol`` share: the sign, the magnitude (at most
    ``ULONG_MAX + 1``, meaning "too large") and the unread rest; None when no
    digit is read (C then leaves ``endptr`` at the very start of the text)."""
    if base == 10 and text.isascii() and text.isdigit():
        negative, run, rest = False, text, ""       # the common case, quickly
    else:
        i = len(text) - len(text.lstrip(WHITE_SPACE))
        negative = text[i:i + 1] == "-"
        if text[i:i + 1] in ("-", "+"):
            i += 1
        # "0x" counts as a prefix only before a hex digit (else C reads the "0")
        hex_prefix = text[i:i + 2] in ("0x", "0X") and _digit_run(16).match(text, i + 2, i + 3)[0]
        if base in (0, 16) and hex_prefix:
            base, i = 16, i + 2
        elif base == 0:
            base = 8 if text[i:i + 1] == "0" else 10
        run = _digit_run(base).match(text, i)[0]
        if not run:
            return None
        rest = text[i + len(run):]
    # int() of a huge text would be slow, or refused (Python's digit limit);
    # more than 64 significant digits overflows in any base
    run = run.lstrip("0") or "0"
    magnitude = int(run, base) if len(run) <= 64 else ULONG_MAX + 1
    return negative, min(magnitude, ULONG_MAX + 1), rest


def c_strtoul(text: str, base: int = 10) -> tuple[int, str, bool]:
    """``strtoul``: the value, the unread rest and whether it overflowed (ERANGE).

    Like C it takes leading blanks and a sign, and a '-' negates modulo 2**64.
    """
    scanned = _strto(text, base)
    if scanned is None:
        return 0, text, False
    negative, magnitude, rest = scanned
    if magnitude > ULONG_MAX:
        return ULONG_MAX, rest, True
    return (-magnitude) % (ULONG_MAX + 1) if negative else magnitude, rest, False


def c_strtol(text: str, base: int = 10) -> tuple[int, str, bool]:
    """``strtol`` (64-bit long): the value, the unread rest and whether it overflowed."""
    scanned = _strto(text, base)
    if scanned is None:
        return 0, text, False
    negative, magnitude, rest = scanned
    value = -magnitude if negative else magnitude
    if not -(2**63) <= value < 2**63:
        return (-(2**63) if negative else 2**63 - 1), rest, True
    return value, rest, False


# -- keepalived's readers --------------------------------------------------------

def read_unsigned(word: str, lo: int, hi: int, ctx: Ctx) -> int:
    """``read_unsigned_func`` (base 10): ``read_unsigned``, ``read_unsigned_strvec``."""
    text = word.lstrip(WHITE_SPACE)
    value, rest, overflow = c_strtoul(text)
    # the order of the checks is keepalived's: "-x" is a negative number
    if text.startswith("-"):
        ctx.report(Level.INVALID_NUMBER, f"negative number '{word}'")
    elif rest:
        ctx.report(Level.INVALID_NUMBER, f"invalid number '{word}'")
    elif overflow or value > UINT_MAX:
        ctx.report(Level.INVALID_NUMBER, f"number '{word}' outside unsigned integer range")
    elif not lo <= value <= hi:
        ctx.report(Level.INVALID_NUMBER, f"number '{word}' outside range [{lo}, {hi}]")
    else:
        return value
    raise Invalid()


def read_int(word: str, lo: int, hi: int, ctx: Ctx) -> int:
    """``read_int_func`` (base 10): ``read_int``, ``read_int_strvec``."""
    value, rest, overflow = c_strtol(word)
    if rest:
        ctx.report(Level.INVALID_NUMBER, f"invalid number '{word}'")
    elif overflow or not INT_MIN <= value <= INT_MAX:
        ctx.report(Level.INVALID_NUMBER, f"number '{word}' outside integer range")
    elif not lo <= value <= hi:
        ctx.report(Level.INVALID_NUMBER, f"number '{word}' outside range [{lo}, {hi}]")
    else:
        return value
    raise Invalid()


def read_decimal(word: str, lo: int, hi: int, shift: int, ctx: Ctx) -> int:
    """``read_decimal_unsigned_long_func``: the value times ``10**shift``.

    ``lo`` and ``hi`` are in that scaled unit.  Too many decimal places is
    reported, yet the value is kept, rounded on the first dropped character.
    """
    if word.startswith("-"):        # only the first character: " -1" goes to strtoull
        ctx.report(Level.INVALID_NUMBER, f"negative number '{word}'")
        raise Invalid()
    # C counts the places in bytes, so a non-ASCII character counts as two or more
    whole, dot, frac = word.encode("utf-8", "surrogateescape").partition(b".")
    round_up = False
    if dot and len(frac) > shift:
        ctx.report(Level.INVALID_NUMBER, f"number '{word}' has too many decimal places")
        # char is signed on x86: the bytes of a non-ASCII character are below '5'
        round_up = ord("5") <= frac[shift] < 0x80
        frac = frac[:shift]
    digits = (whole + frac).decode("latin-1") + "0" * (shift - len(frac))
    value, rest, overflow = c_strtoul(digits)
    if round_up:
        value = (value + 1) % (ULONG_MAX + 1)       # C's unsigned long long wraps
    if rest:
        ctx.report(Level.INVALID_NUMBER, f"invalid number '{word}'")
    elif overflow:
        ctx.report(Level.INVALID_NUMBER, f"number '{word}' outside unsigned decimal range")
    elif not lo <= value <= hi:
        ctx.report(Level.INVALID_NUMBER, f"number '{word}' outside range "
                                         f"[{_fixed(lo, shift)}, {_fixed(hi, shift)}]")
    else:
        return value
    raise Invalid()


def _fixed(scaled: int, shift: int) -> str:
    """``%lu.%*.*lu`` of keepalived's range message (with shift 0 C prints "N.")."""
    whole, frac = divmod(scaled, 10**shift)
    return f"{whole}.{frac:0{shift}d}" if shift else f"{whole}."


def or_none(read: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """A reader's value, or None once it has reported: for callers that carry on."""
    try:
        return read(*args, **kwargs)
    except Invalid:
        return None


# -- decimals as written and as configured ---------------------------------------

def to_scaled(value: float, shift: int) -> int:
    """The exact scaled integer nearest to a float (so that rendering round-trips)."""
    return round(Fraction(value) * 10**shift)


def format_decimal(value: float, digits: int) -> str:
    """A decimal as keepalived reads it back: no trailing zeros, no bare dot."""
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
