"""The model written back as canonical keepalived.conf text.

Canonical means: one keyword a line, blocks opened on the keyword's line and
indented by four spaces, keywords in the model's order, words quoted only when
they must be.  The same model always gives the same bytes, and reading the
text back gives the same model.
"""

from __future__ import annotations

import re
from typing import Any

from .model import Node
from .schema import ENTRIES

INDENT = "    "
# Words that keepalived's reader would split, treat as a comment, a block brace,
# a conditional, a definition or a sequence unless they are quoted.
_NEEDS_QUOTES = re.compile(r'[\s{}#!\\$]|^[@~]|^$')


class RenderError(ValueError):
    """The model holds a value that keepalived.conf cannot express."""


def quote(word: str) -> str:
    if '"' in word or "\n" in word or "\r" in word:
        raise RenderError(f"a word cannot contain a double quote or a line break: {word!r}")
    if _NEEDS_QUOTES.search(word):
        return f'"{word}"'
    return word


def _line(depth: int, words: list[str], opens: bool = False) -> str:
    text = INDENT * depth + " ".join(quote(w) if i else w for i, w in enumerate(words))
    return text + " {" if opens else text


def _value_line(depth: int, words: list[str]) -> str:
    # keepalived compares a line's first word with the braces after unquoting it
    if not words or words[0] in ("{", "}"):
        raise RenderError(f"a block line cannot start with a brace: {words!r}")
    return INDENT * depth + " ".join(quote(w) for w in words)


def render(root: Node) -> str:
    lines: list[str] = []
    _values(root, 0, lines)
    return "\n".join(lines) + "\n" if lines else ""


def _values(node: Node, depth: int, out: list[str]) -> None:
    if node.spec.entries is not None:
        for item in node.values.get(ENTRIES, []):
            out.append(_value_line(depth, node.spec.entries.render(item)))
        return
    for name, value in node.values.items():
        kw = node.spec.keyword(name)
        if kw.lines is not None:
            out.append(_line(depth, [name], opens=True))
            for item in value:
                out.append(_value_line(depth + 1, kw.lines.render(item)))
            out.append(INDENT * depth + "}")
            continue
        items: list[Any] = value if kw.repeat else [value]
        for item in items:
            if kw.block is not None:
                head = kw.block.head.render(item.head) if kw.block.head and item.head is not None \
                    else []
                out.append(_line(depth, [name, *head], opens=True))
                _values(item, depth + 1, out)
                out.append(INDENT * depth + "}")
            else:
                out.append(_line(depth, [name, *kw.arg.render(item)]))
