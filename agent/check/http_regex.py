"""HTTP_GET/SSL_GET ``regex``: keepalived's PCRE2 options on Python's ``re``.

keepalived compiles ``regex`` with PCRE2 and the ``regex_options`` named after
PCRE2's compile flags.  We use Python's ``re`` on the raw body bytes (on the
body decoded from UTF-8 with ``utf``).  The options fall in three groups:

- mapped: ``caseless`` (IGNORECASE), ``dotall`` (DOTALL), ``multiline``
  (MULTILINE), ``extended`` (VERBOSE), ``utf`` (match text decoded from UTF-8;
  a body that is not valid UTF-8 never matches, as PCRE2 rejects it), ``ucp``
  (with ``utf``: Unicode classes for \\w, \\d, \\b; without it ``utf`` keeps
  them ASCII, as PCRE2 does), ``firstline`` (the match must start on the first
  line searched);
- no effect on whether a pattern matches, accepted and ignored:
  ``auto_callout``, ``no_auto_capture``, ``no_auto_possess``,
  ``no_dotstar_anchor``, ``no_start_optimize``, ``never_backslash_c``,
  ``use_offset_limit`` (keepalived sets no offset limit), ``never_ucp``, ``never_utf``;
- no Python equivalent, ignored with a warning (:data:`UNSUPPORTED_OPTIONS`):
  ``allow_empty_class``, ``alt_bsux``, ``alt_circumflex``, ``alt_verbnames``,
  ``dollar_endonly``, ``dupnames``, ``match_unset_backref``, ``ungreedy``.

The pattern itself is Python syntax: most PCRE patterns are, but some PCRE-only
constructs (``\\K``, ``\\h``, ``(?|...)``, recursion) are refused when compiled.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

_FLAGS = {"caseless": re.IGNORECASE, "dotall": re.DOTALL, "multiline": re.MULTILINE,
          "extended": re.VERBOSE}
_HANDLED = {"utf", "ucp", "firstline"}
NO_EFFECT_OPTIONS = frozenset({
    "auto_callout", "no_auto_capture", "no_auto_possess", "no_dotstar_anchor",
    "no_start_optimize", "never_backslash_c", "use_offset_limit", "never_ucp", "never_utf",
})
UNSUPPORTED_OPTIONS = frozenset({
    "allow_empty_class", "alt_bsux", "alt_circumflex", "alt_verbnames", "dollar_endonly",
    "dupnames", "match_unset_backref", "ungreedy",
})


@dataclass(frozen=True)
class BodyRegex:
    pattern: re.Pattern[bytes] | re.Pattern[str]
    text: bool          # utf: match the body decoded from UTF-8
    firstline: bool


def unsupported_options(options: Iterable[str]) -> tuple[str, ...]:
    """The options given that have no Python equivalent (and are ignored)."""
    return tuple(o for o in options if o in UNSUPPORTED_OPTIONS)


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str, options: tuple[str, ...] = ()) -> BodyRegex:
    """Compile ``pattern`` with keepalived's ``regex_options``; raises re.error."""
    flags = 0
    for option in options:
        flags |= _FLAGS.get(option, 0)
    text = "utf" in options
    if text:
        if "ucp" not in options:
            flags |= re.ASCII
        compiled: re.Pattern[bytes] | re.Pattern[str] = re.compile(pattern, flags)
    else:
        # the configured text is matched byte for byte, as PCRE2 without utf does
        compiled = re.compile(pattern.encode("utf-8", "surrogateescape"), flags)
    return BodyRegex(compiled, text, "firstline" in options)


def regex_error(pattern: str, options: tuple[str, ...] = ()) -> str | None:
    """Why ``pattern`` cannot be used, or None."""
    try:
        compile_regex(pattern, tuple(options))
    except re.error as err:
        return f"invalid regex {pattern!r}: {err}"
    return None


def regex_found(regex: BodyRegex, body: bytes, min_offset: int = 0,
                max_offset: int | None = None) -> bool:
    """Whether ``regex`` matches ``body`` starting at a byte offset in
    [min_offset, max_offset] (max_offset None: anywhere after min_offset).

    An empty body never matches: keepalived only runs the regex on body bytes.
    """
    if not body or min_offset > len(body):
        return False
    if regex.text:
        try:
            subject: bytes | str = body.decode("utf-8")
            start = len(body[:min_offset].decode("utf-8"))
        except UnicodeDecodeError:
            return False            # invalid UTF-8, or an offset inside a character
        newline: bytes | str = "\n"
    else:
        subject, start, newline = body, min_offset, b"\n"
    match = regex.pattern.search(subject, start)
    if match is None:
        return False
    if regex.firstline:
        first_end = subject.find(newline, start)
        if first_end != -1 and match.start() > first_end:
            return False
    if max_offset is None:
        return True
    at = match.start()
    if regex.text:
        at = len(subject[:at].encode("utf-8"))
    return at <= max_offset
