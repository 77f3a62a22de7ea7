"""Script strings as keepalived 2.2.7 reads them: the words of a command line.

Part of the language (``keepalived -t`` checks scripts as it reads them), so
the configuration's checks and the host's script runner (``host/scripts.py``)
split a command the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

_WHITE_SPACE = b" \t\f\n\r\v"


class ScriptError(ValueError):
    """A script or user that cannot be used; the text is keepalived's message."""


_SIMPLE_ESCAPES = {ord("a"): 7, ord("b"): 8, ord("E"): 0x1B, ord("f"): 12, ord("n"): 10,
                   ord("r"): 13, ord("t"): 9, ord("v"): 11}


def split_command(text: str) -> list[str]:
    """Split a script string into argv as keepalived 2.2.7 does.

    Words are separated by white space; ``'...'`` and ``"..."`` quote (and may
    join a word: ``a"b c"d`` is one word); a backslash escapes everywhere, also
    inside either kind of quote: ``\\a \\b \\E \\f \\n \\r \\t \\v``, ``\\xHH...``
    (every hex digit that follows, kept to 8 bits), ``\\cX`` (control X), ``\\NNN``
    (octal, up to 3 digits), any other character stands for itself.  A word ends
    at an escaped NUL, as C strings do.  Work is done on bytes so that ``\\xff``
    reaches the program as that byte.
    """
    data = text.encode("utf-8", "surrogateescape")
    words: list[str] = []
    i, n = 0, len(data)
    while True:
        while i < n and data[i] in _WHITE_SPACE:
            i += 1
        if i >= n:
            break
        word = bytearray()
        quote = 0
        while i < n:
            c = data[i]
            if c == 0x5C:                                   # backslash
                i += 1
                if i >= n:
                    raise ScriptError(f"Missing escape char at end: '{text}'")
                byte, i = _escape(data, i)
                word.append(byte)
            elif quote:
                if c == quote:
                    quote = 0
                else:
                    word.append(c)
                i += 1
            elif c in (0x22, 0x27):
                quote = c
                i += 1
            elif c in _WHITE_SPACE:
                break
            else:
                word.append(c)
                i += 1
        if quote:
            raise ScriptError(f"String '{text}': missing terminating {chr(quote)}")
        words.append(bytes(word).split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))
    return words


def _escape(data: bytes, i: int) -> tuple[int, int]:
    """The byte an escape at ``data[i]`` (just after the backslash) stands for, and where
    the text continues."""
    c = data[i]
    if c == ord("x") and i + 1 < len(data) and _is_hex(data[i + 1]):
        value = 0
        i += 1
        while i < len(data) and _is_hex(data[i]):
            value = ((value << 4) | int(chr(data[i]), 16)) & 0xFF
            i += 1
        return value, i
    if c == ord("c") and i + 1 < len(data):
        return data[i + 1] & 0x1F, i + 2
    if ord("0") <= c <= ord("7"):
        value = c - ord("0")
        i += 1
        for _ in range(2):
            if i < len(data) and ord("0") <= data[i] <= ord("7"):
                value = ((value << 3) + data[i] - ord("0")) & 0xFF
                i += 1
        return value, i
    return _SIMPLE_ESCAPES.get(c, c), i + 1


def _is_hex(c: int) -> bool:
    return chr(c) in "0123456789abcdefABCDEF"


def split_script_line(line: str) -> tuple[list[str], list[str]]:
    """A whole ``KEYWORD COMMAND [USER [GROUP]]`` line split as keepalived does: the line
    into words (quotes and escapes), then the command word again into argv.  Returns
    (argv, the words after the command)."""
    words = split_command(line)
    if len(words) < 2:
        raise ScriptError(f"No script specified in '{line}'")
    return split_command(words[1]), words[2:]


def cmd_str(argv: Sequence[str]) -> str:
    """A command as keepalived prints it and hands it to ``/bin/sh -c``: every word in
    single quotes, except a first word that is a redirection (``</file``)."""
    return " ".join(w if i == 0 and w[:1] in ("<", ">") else f"'{w}'"
                    for i, w in enumerate(argv))


def is_redirection(argv: Sequence[str]) -> bool:
    """``</path``: keepalived's idiom for "this file can be opened", run by the shell."""
    first = argv[0] if argv else ""
    return first.startswith("<") and first[1:].lstrip(" \t").startswith("/")
