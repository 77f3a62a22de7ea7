"""From logical lines to the model, keyword by keyword (keepalived's ``process_stream``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass, field

from .diag import Diagnostics, Level, Where
from .lexer import LogicalLine, Preprocessor, split_tokens
from .model import Node
from .schema import ENTRIES, BlockSpec, Ctx, Invalid, Kw


@dataclass
class ParseResult:
    root: Node
    diags: Diagnostics
    files: list[str] = field(default_factory=list)
    # keywords we read but do not act on yet: "block.keyword" -> first place seen
    not_acted: dict[str, Where] = field(default_factory=dict)


class _Lines:
    """Logical lines with one line of look-ahead."""

    def __init__(self, source: Iterator[LogicalLine]) -> None:
        self.source = source
        self.back: list[LogicalLine] = []

    def next(self) -> LogicalLine | None:
        if self.back:
            return self.back.pop()
        return next(self.source, None)

    def push(self, line: LogicalLine) -> None:
        self.back.append(line)


class Parser:
    def __init__(self, pre: Preprocessor, root: BlockSpec, diags: Diagnostics) -> None:
        self.pre = pre
        self.root_spec = root
        self.diags = diags
        self.lines = _Lines(iter(pre))
        self.not_acted: dict[str, Where] = {}
        self.heads: list[object] = []   # names of the enclosing named blocks

    def parse(self) -> Node:
        root = Node(self.root_spec)
        if self.pre.first_opened:
            self._block(root, need_bob=False, depth=0)
            if self.pre.block_depth > 0:
                self.diags.add(Level.MISSING_EOB,
                               f"There are {self.pre.block_depth} missing '}}'s or extra '{{'s",
                               self.pre.where())
        return root

    def _words(self, line: LogicalLine) -> list[str]:
        return split_tokens(line.text, self.diags, line.where)

    def _block(self, node: Node, need_bob: bool, depth: int) -> None:
        while (line := self.lines.next()) is not None:
            words = self._words(line)
            if not words:
                continue
            first = words[0]
            if need_bob:
                need_bob = False
                if first == "{" and depth > 0:
                    continue
                self.diags.add(Level.MISSING_BOB,
                               "Missing '{' at beginning of configuration block", line.where)
            elif first == "{":
                self.diags.add(Level.UNEXPECTED_BOB, "Unexpected '{' - ignoring", line.where)
                continue
            if first == "}":
                if depth > 0:
                    return
                continue        # the lexer has said "Extra '}' found"
            if node.spec.entries is not None:
                self._entry(node, words, line)
                continue
            kw = node.spec.lookup(first)
            if kw is None:
                self._unknown(first, line)
                continue
            self._keyword(node, kw, words, line, depth)

    def _entry(self, node: Node, words: list[str], line: LogicalLine) -> None:
        kw = node.spec.keyword(ENTRIES)
        try:
            value = kw.arg.parse(words, self._ctx(kw, line.where, words[0]))
        except Invalid:
            return
        node.values.setdefault(ENTRIES, []).append(value)
        node.value_where.setdefault(ENTRIES, line.where)

    def _unknown(self, word: str, line: LogicalLine) -> None:
        self.diags.add(Level.UNKNOWN_KEYWORD, f"Unknown keyword '{word}'", line.where)
        following = self.lines.next()
        if following is None:
            return
        if following.text != "{":
            self.lines.push(following)
            return
        # keepalived 2.2.7 reads an unknown block's contents as if they were at the
        # enclosing level, and its '}' then closes the enclosing block: we skip it.
        depth = 1
        while depth and (inner := self.lines.next()) is not None:
            if inner.text == "{":
                depth += 1
            elif inner.text == "}":
                depth -= 1

    def _ctx(self, kw: Kw, where: Where, word: str | None = None) -> Ctx:
        head = next((h for h in reversed(self.heads) if h is not None), None)
        return Ctx(lambda level, msg: self.diags.add(level, msg, where), kw.name, head, word)

    def _note_use(self, node: Node, kw: Kw, where: Where) -> None:
        if not kw.acted:
            self.not_acted.setdefault(f"{node.kind}.{kw.name}", where)

    def _keyword(self, node: Node, kw: Kw, words: list[str], line: LogicalLine,
                 depth: int) -> None:
        ctx = self._ctx(kw, line.where, words[0])
        self._note_use(node, kw, line.where)
        if kw.block is not None:
            self._sub_block(node, kw, words[1:], line, ctx, depth)
        elif kw.lines is not None:
            self._line_block(node, kw, words, line)
        else:
            try:
                value = kw.arg.parse(words[1:], ctx)
            except Invalid:
                return
            if kw.repeat:
                node.values.setdefault(kw.name, []).append(value)
            else:
                node.values[kw.name] = value
            node.value_where.setdefault(kw.name, line.where)

    def _sub_block(self, node: Node, kw: Kw, args: list[str], line: LogicalLine,
                   ctx: Ctx, depth: int) -> None:
        spec = kw.block
        assert spec is not None
        keep = True
        head = None
        if spec.head is not None:
            try:
                head = spec.head.parse(args, ctx)
            except Invalid:
                keep = False
        if kw.repeat or not keep:
            child = Node(spec, head, where=line.where)
            if keep:
                node.values.setdefault(kw.name, []).append(child)
        else:
            existing = node.values.get(kw.name)
            child = existing if existing is not None else Node(spec, head, where=line.where)
            node.values[kw.name] = child
        node.value_where.setdefault(kw.name, line.where)
        self.heads.append(head)
        try:
            self._block(child, need_bob=True, depth=depth + 1)
        finally:
            self.heads.pop()

    def _line_block(self, node: Node, kw: Kw, words: list[str], line: LogicalLine) -> None:
        assert kw.lines is not None
        if len(words) > 1:
            self.diags.add(Level.GENERAL_ERROR,
                           f"Block {words[0]} has extra parameters {words[1]} ...", line.where)
        collected: list = list(node.values.get(kw.name, ()))
        need_bob = True
        while (inner := self.lines.next()) is not None:
            inner_words = self._words(inner)
            if not inner_words:
                continue
            if need_bob:
                need_bob = False
                if inner_words == ["{"]:
                    continue
                self.diags.add(Level.NOTE, f"'{{' missing from beginning of block {kw.name}",
                               inner.where)
            if inner_words[0] == "}":
                break
            try:
                collected.append(kw.lines.parse(inner_words,
                                                self._ctx(kw, inner.where, words[0])))
            except Invalid:
                continue
        node.values[kw.name] = tuple(collected)
        node.value_where.setdefault(kw.name, line.where)


def parse(path: str, *, config_id: str | None = None, text: str | None = None,
          environ: dict[str, str] | None = None, random_seed: int | None = None,
          root: BlockSpec | None = None) -> ParseResult:
    """Read a keepalived.conf (or ``text`` standing for it) into the model."""
    from .keywords import ROOT

    diags = Diagnostics()
    pre = Preprocessor(path, diags, config_id, random_seed=random_seed, environ=environ,
                       text=text)
    parser = Parser(pre, root or ROOT, diags)
    # The tree only grows while it is read: collecting cycles meanwhile is wasted
    # work that scans it again and again (a third of the time on large files).
    collecting = gc.isenabled()
    gc.disable()
    try:
        tree = parser.parse()
    finally:
        if collecting:
            gc.enable()
    return ParseResult(tree, diags, pre.opened_files, parser.not_acted)
