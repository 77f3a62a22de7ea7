"""keepalived 2.2.7's number readers: values and messages, case by case.

The expected values are what keepalived 2.2.7's own functions (lib/parser.c,
built with glibc on x86_64) give for the same words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from keepalived_py.config import numbers
from keepalived_py.config.diag import Level
from keepalived_py.config.numbers import (
    INT_MAX,
    INT_MIN,
    UINT_MAX,
    ULONG_MAX,
    c_strtol,
    c_strtoul,
    format_decimal,
    or_none,
    read_decimal,
    read_int,
    read_unsigned,
    to_scaled,
)
from keepalived_py.config.parser import parse
from keepalived_py.config.schema import Ctx, Invalid

HUGE = "9" * 5000           # more digits than Python's int() takes from a text


def read(reader: Callable[..., int], word: str, *args: Any) -> tuple[int | None, list[str]]:
    """The reader's value (None when it raised) and the messages it reported."""
    said: list[tuple[Level, str]] = []
    ctx = Ctx(lambda level, message: said.append((level, message)), "kw")
    try:
        value: int | None = reader(word, *args, ctx)
    except Invalid:
        value = None
    assert all(level is Level.INVALID_NUMBER for level, _ in said)
    return value, [message for _, message in said]


# -- strtoul / strtol ----------------------------------------------------------------

@pytest.mark.parametrize("text, base, expected", [
    ("42", 10, (42, "", False)),
    ("  42abc", 10, (42, "abc", False)),        # blanks taken, the rest left
    ("+42", 10, (42, "", False)),
    ("abc", 10, (0, "abc", False)),             # no digit: nothing read at all
    ("  ", 10, (0, "  ", False)),
    ("", 10, (0, "", False)),
    ("-1", 10, (ULONG_MAX, "", False)),         # '-' negates modulo 2**64
    ("-18446744073709551615", 10, (1, "", False)),
    ("18446744073709551615", 10, (ULONG_MAX, "", False)),
    ("18446744073709551616", 10, (ULONG_MAX, "", True)),
    ("-18446744073709551616", 10, (ULONG_MAX, "", True)),
    (HUGE, 10, (ULONG_MAX, "", True)),
    ("0" * 5000 + "7", 10, (7, "", False)),
    ("08", 10, (8, "", False)),
    ("0x10", 10, (0, "x10", False)),
    ("0x10", 16, (16, "", False)),
    ("0XfF", 16, (255, "", False)),
    ("ff", 16, (255, "", False)),
    ("0x", 16, (0, "x", False)),                # a prefix only before a hex digit
    ("0xg", 16, (0, "xg", False)),
    ("010", 0, (8, "", False)),                 # base 0: octal after a 0, hex after 0x
    ("08", 0, (0, "8", False)),
    ("0x1F", 0, (31, "", False)),
    ("٣", 10, (0, "٣", False)),                 # only ASCII digits
    ("1_0", 10, (1, "_0", False)),
])
def test_strtoul(text: str, base: int, expected: tuple[int, str, bool]) -> None:
    assert c_strtoul(text, base) == expected


@pytest.mark.parametrize("text, base, expected", [
    ("-42", 10, (-42, "", False)),
    (" +42 ", 10, (42, " ", False)),
    ("", 10, (0, "", False)),
    ("-", 10, (0, "-", False)),
    ("9223372036854775807", 10, (2**63 - 1, "", False)),
    ("9223372036854775808", 10, (2**63 - 1, "", True)),
    ("-9223372036854775809", 10, (-(2**63), "", True)),
    ("-" + HUGE, 10, (-(2**63), "", True)),
    ("0755", 0, (0o755, "", False)),
    ("0o22", 0, (0, "o22", False)),
])
def test_strtol(text: str, base: int, expected: tuple[int, str, bool]) -> None:
    assert c_strtol(text, base) == expected


# -- read_unsigned (read_unsigned_func) -----------------------------------------------

@pytest.mark.parametrize("word, lo, hi, value, messages", [
    ("42", 0, UINT_MAX, 42, []),
    ("  42", 0, UINT_MAX, 42, []),
    ("\t42", 0, UINT_MAX, 42, []),
    ("+42", 0, UINT_MAX, 42, []),
    ("08", 0, UINT_MAX, 8, []),
    ("", 0, UINT_MAX, 0, []),                   # strtoul reads nothing and stops at the end
    ("   ", 0, UINT_MAX, 0, []),
    ("42 ", 0, UINT_MAX, None, ["invalid number '42 '"]),
    ("+", 0, UINT_MAX, None, ["invalid number '+'"]),
    ("0x10", 0, UINT_MAX, None, ["invalid number '0x10'"]),
    ("1_0", 0, UINT_MAX, None, ["invalid number '1_0'"]),
    ("٣", 0, UINT_MAX, None, ["invalid number '٣'"]),
    ("-0", 0, UINT_MAX, None, ["negative number '-0'"]),
    (" -1", 0, UINT_MAX, None, ["negative number ' -1'"]),
    ("-abc", 0, UINT_MAX, None, ["negative number '-abc'"]),
    ("4294967295", 0, UINT_MAX, UINT_MAX, []),
    ("4294967296", 0, UINT_MAX, None, ["number '4294967296' outside unsigned integer range"]),
    ("18446744073709551616", 0, UINT_MAX, None,
     ["number '18446744073709551616' outside unsigned integer range"]),
    (HUGE, 0, UINT_MAX, None, [f"number '{HUGE}' outside unsigned integer range"]),
    ("256", 1, 255, None, ["number '256' outside range [1, 255]"]),
    ("0", 1, 255, None, ["number '0' outside range [1, 255]"]),
    ("", 1, 255, None, ["number '' outside range [1, 255]"]),
])
def test_read_unsigned(word: str, lo: int, hi: int, value: int | None,
                       messages: list[str]) -> None:
    assert read(read_unsigned, word, lo, hi) == (value, messages)


# -- read_int (read_int_func) ---------------------------------------------------------

@pytest.mark.parametrize("word, lo, hi, value, messages", [
    ("42", INT_MIN, INT_MAX, 42, []),
    ("-42", INT_MIN, INT_MAX, -42, []),
    ("+42", INT_MIN, INT_MAX, 42, []),
    ("  -42", INT_MIN, INT_MAX, -42, []),
    ("08", INT_MIN, INT_MAX, 8, []),
    ("", INT_MIN, INT_MAX, 0, []),              # as strtoul: nothing read, nothing left
    (" ", INT_MIN, INT_MAX, None, ["invalid number ' '"]),     # ...but here the blank is left
    ("-", INT_MIN, INT_MAX, None, ["invalid number '-'"]),
    ("-42 ", INT_MIN, INT_MAX, None, ["invalid number '-42 '"]),
    ("0x10", INT_MIN, INT_MAX, None, ["invalid number '0x10'"]),
    ("2147483647", INT_MIN, INT_MAX, INT_MAX, []),
    ("-2147483648", INT_MIN, INT_MAX, INT_MIN, []),
    ("2147483648", INT_MIN, INT_MAX, None, ["number '2147483648' outside integer range"]),
    ("-2147483649", INT_MIN, INT_MAX, None, ["number '-2147483649' outside integer range"]),
    ("4294967296", INT_MIN, INT_MAX, None, ["number '4294967296' outside integer range"]),
    ("18446744073709551616", INT_MIN, INT_MAX, None,
     ["number '18446744073709551616' outside integer range"]),
    ("-" + HUGE, INT_MIN, INT_MAX, None, [f"number '-{HUGE}' outside integer range"]),
    ("254", -253, 253, None, ["number '254' outside range [-253, 253]"]),
])
def test_read_int(word: str, lo: int, hi: int, value: int | None, messages: list[str]) -> None:
    assert read(read_int, word, lo, hi) == (value, messages)


# -- read_decimal (read_decimal_unsigned_long_func) -----------------------------------

SECONDS = (0, 1000 * 10**6, 6)      # 0..1000 s in micro-seconds
TOO_MANY = "has too many decimal places"


@pytest.mark.parametrize("word, bounds, value, messages", [
    ("1", SECONDS, 1_000_000, []),
    ("1.5", SECONDS, 1_500_000, []),
    (".5", SECONDS, 500_000, []),
    ("1.", SECONDS, 1_000_000, []),
    ("08", SECONDS, 8_000_000, []),
    ("", SECONDS, 0, []),
    (" 1.5", SECONDS, 1_500_000, []),           # blanks and '+' reach strtoull
    ("+1.5", SECONDS, 1_500_000, []),
    ("-1", SECONDS, None, ["negative number '-1'"]),
    # only the first character is checked for '-': strtoull negates modulo 2**64
    (" -1", SECONDS, None, ["number ' -1' outside range [0.000000, 1000.000000]"]),
    ("1.0000004", SECONDS, 1_000_000, [f"number '1.0000004' {TOO_MANY}"]),
    ("1.0000005", SECONDS, 1_000_001, [f"number '1.0000005' {TOO_MANY}"]),
    ("1.9999995", SECONDS, 2_000_000, [f"number '1.9999995' {TOO_MANY}"]),
    ("1.123456x", SECONDS, 1_123_457, [f"number '1.123456x' {TOO_MANY}"]),  # 'x' >= '5'
    ("1.123456é", SECONDS, 1_123_456, [f"number '1.123456é' {TOO_MANY}"]),  # signed char
    ("1.12345é", SECONDS, None,                 # places are counted in bytes
     [f"number '1.12345é' {TOO_MANY}", "invalid number '1.12345é'"]),
    ("1.2345", (0, 10**9, 3), 1235, [f"number '1.2345' {TOO_MANY}"]),
    ("0x10", SECONDS, None, ["invalid number '0x10'"]),
    ("1.2.3", SECONDS, None, ["invalid number '1.2.3'"]),
    ("1,5", SECONDS, None, ["invalid number '1,5'"]),
    ("1000.000001", SECONDS, None,
     ["number '1000.000001' outside range [0.000000, 1000.000000]"]),
    ("0", (1, UINT_MAX, 3), None, ["number '0' outside range [0.001, 4294967.295]"]),
    ("4294.967296", (0, UINT_MAX, 6), None,
     ["number '4294.967296' outside range [0.000000, 4294.967295]"]),
    ("18446744073709.551615", (0, ULONG_MAX, 6), ULONG_MAX, []),
    ("18446744073709.551616", (0, ULONG_MAX, 6), None,
     ["number '18446744073709.551616' outside unsigned decimal range"]),
    (HUGE, SECONDS, None, [f"number '{HUGE}' outside unsigned decimal range"]),
    # rounding up past 2**64 - 1 wraps to 0, as C's unsigned long long does
    ("18446744073709.5516155", SECONDS, 0, [f"number '18446744073709.5516155' {TOO_MANY}"]),
    ("11", (0, 10, 0), None, ["number '11' outside range [0., 10.]"]),  # "%*.*lu" of 0 places
])
def test_read_decimal(word: str, bounds: tuple[int, int, int], value: int | None,
                      messages: list[str]) -> None:
    lo, hi, shift = bounds
    assert read(read_decimal, word, lo, hi, shift) == (value, messages)


# -- helpers ---------------------------------------------------------------------------

def test_or_none_keeps_the_report_and_gives_none() -> None:
    said: list[str] = []
    ctx = Ctx(lambda level, message: said.append(message), "kw")
    assert or_none(read_unsigned, "7", 0, 10, ctx) == 7
    assert or_none(read_unsigned, "x", 0, 10, ctx) is None
    assert said == ["invalid number 'x'"]


@pytest.mark.parametrize("value, digits, text", [
    (1.5, 6, "1.5"), (3.0, 6, "3"), (0.000001, 6, "0.000001"), (100.0, 0, "100"),
    (4294.967295, 6, "4294.967295"), (1.2345, 3, "1.234"),
])
def test_format_decimal(value: float, digits: int, text: str) -> None:
    assert format_decimal(value, digits) == text


def test_to_scaled_is_exact() -> None:
    assert to_scaled(4294.967295, 6) == UINT_MAX
    assert to_scaled(0.001, 3) == 1
    assert to_scaled(0.000001, 6) == 1


def test_no_other_number_reader_is_left() -> None:
    # the value types import these; a second copy would show up as its own function
    from keepalived_py.config import schema, values_lvs, values_vrrp
    for module in (schema, values_lvs, values_vrrp):
        for name in ("read_unsigned", "read_int", "read_decimal", "c_strtoul", "c_strtol"):
            if hasattr(module, name):
                assert getattr(module, name) is getattr(numbers, name)
        for gone in ("read_signed", "read_fixed", "read_unsigned_c", "read_int_c",
                     "read_decimal_c", "format_fixed"):
            assert not hasattr(module, gone)


# -- through the keywords: what keepalived -t says for these lines -----------------------

def test_keywords_read_numbers_as_keepalived_does() -> None:
    text = ('global_defs {\n'
            '  vrrp_garp_interval " 5"\n'   # strtoull skips the blank
            '  vrrp_garp_master_repeat ""\n'  # strtoul of "" is 0, then the keyword's own rule
            '  umask 0o22\n'                 # strtol(.., 0) stops at the 'o'
            '  lvs_sync_daemon eth0 id ""\n'
            '}\n'
            'bfd_instance b1 {\n'
            '  neighbor_ip 10.0.0.1\n'
            '  max_hops ""\n'                # strtol of "" is 0 (it used to crash the reader)
            '}\n')
    result = parse("t.conf", text=text)
    # keepalived 2.2.7 -t prints exactly these two lines for this file
    assert [(d.where.line if d.where else None, d.message) for d in result.diags
            if d.level is not Level.NOTE] == [
        (3, "vrrp_garp_master_repeat must be greater than 0, setting to 1"),
        (4, "invalid umask value 0o22"),
    ]
    defs = result.root.values["global_defs"]
    assert defs.get("vrrp_garp_interval") == 5.0
    assert defs.get("lvs_sync_daemon") == ("eth0", "id", "0")
