"""The keepalived.conf text layer: files, includes, comments, ``@`` lines,
``$`` definitions, ``~SEQ``/``~LST`` and block-brace splitting.

It follows keepalived 2.2.7's ``read_line()`` (lib/parser.c) step for step, so
that the logical lines, and the line numbers diagnostics point at, are the same.
Where 2.2.7 hangs (a definition that expands to itself) or cuts a long line into
1 KiB pieces, we stop with a diagnostic instead.
"""

from __future__ import annotations

import glob
import os
import random
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .diag import Diagnostics, Level, Where

WHITESPACE = " \t\f\n\r\v"
_LITERAL_HASH = "\ue023"     # private-use code points standing for ${_HASH} and ${_BANG}
_LITERAL_BANG = "\ue021"
MAX_LINE = 1 << 20          # a physical line longer than this is refused
MAX_EXPANSIONS = 10_000     # definition replacements on one line before we call it a loop
MAX_INCLUDE_DEPTH = 64
_WORD = re.compile(r"[^ \t\f\n\r\v]+")
_NEEDS_DECOMMENT = re.compile(r'["\\#!]')
_INCLUDE = re.compile(r"include([rmwba]?)[ \t\f\n\r\v]+(.*)$", re.S)
_USE = re.compile(r"\$(\{)?([A-Za-z_][A-Za-z0-9_]*)")
_ENV_PARAM = re.compile(r" +([A-Za-z_][A-Za-z0-9_]*)")
_NUM_PARAMS = re.compile(r"[ 0-9]*")


@dataclass
class Definition:
    value: str = ""
    multiline: bool = False
    fn: Callable[[str | None], str] | None = None
    max_params: int = 0


@dataclass
class _Seq:
    """A pending ``~SEQ`` or ``~LST``: lines still to generate from ``text``."""

    text: str
    where: Where
    # ~SEQ
    var: str = ""
    next: int = 0
    step: int = 1
    last: int = 0
    hex: bool = False
    # ~LST
    names: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)

    def emit(self, defs: dict[str, Definition]) -> tuple[str, bool]:
        """Set the variables for the next line; return its text and whether more follow."""
        if self.names:
            for name, value in zip(self.names, self.rows.pop(0), strict=True):
                _set_definition(defs, name, value)
            return self.text, bool(self.rows)
        value = format(self.next, "x") if self.hex else str(self.next)
        _set_definition(defs, self.var, value)
        self.next += self.step
        more = self.next <= self.last if self.step > 0 else self.next >= self.last
        return self.text, more


def _set_definition(defs: dict[str, Definition], name: str, value: str) -> None:
    defs[name] = Definition(value=value)


@dataclass
class _OpenFile:
    lines: Iterator[str | None]
    path: str
    display: str | None     # the name keepalived prints, or None for "(Line N)"
    line_no: int = 0


@dataclass
class LogicalLine:
    text: str
    where: Where


def decomment(text: str, diags: Diagnostics, where: Where) -> str:
    """Strip comments and surrounding blanks; unescape ``\\#`` and ``\\!``."""
    text = text.lstrip(" \t")
    out: list[str] = []
    quote = False
    cont = False
    i = 0
    n = len(text)
    cut = None
    while i < n:
        c = text[i]
        if c == '"':
            if cut is None:
                quote = not quote
        elif c == "\\":
            if i + 1 < n:
                if not quote and cut is None and text[i + 1] in "#!":
                    out.append(text[i + 1])
                    i += 2
                    continue
                out.append(text[i : i + 2])
                i += 2
                continue
            cont = True
            break
        elif c in "!#" and not quote and cut is None:
            cut = len(out)
        out.append(c)
        i += 1
    if quote:
        diags.add(Level.GENERAL_ERROR, f"Unterminated quote '{text}'", where)
    result = "".join(out if cut is None else out[:cut]).rstrip(" \t")
    if cont:
        result += "\\"
    return result


def split_tokens(text: str, diags: Diagnostics | None = None,
                 where: Where | None = None) -> list[str]:
    """Split a logical line into words as keepalived does (``alloc_strvec``).

    A word that starts with ``"`` runs to the next ``"`` and loses its quotes;
    any other word ends at white space or at a ``"``.
    """
    if '"' not in text:
        return _WORD.findall(text)
    words: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in WHITESPACE:
            i += 1
        if i >= n:
            break
        if text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                if diags is not None:
                    diags.add(Level.UNMATCHED_QUOTE, f"Unmatched quote: '{text}'", where)
                break
            words.append(text[i + 1 : end])
            i = end + 1
        else:
            j = i
            while j < n and text[j] not in WHITESPACE and text[j] != '"':
                j += 1
            words.append(text[i:j])
            i = j
    return words


class Preprocessor:
    """Produces keepalived's logical lines from a configuration file."""

    def __init__(self, path: str, diags: Diagnostics, config_id: str | None,
                 random_seed: int | None = None,
                 environ: dict[str, str] | None = None, text: str | None = None) -> None:
        self.diags = diags
        self.config_id = config_id
        self.files: list[_OpenFile] = []
        self.defs: dict[str, Definition] = {}
        self.seqs: list[_Seq] = []
        # remaining lines of the multi-line definition being expanded, last first
        self.multiline_next: list[str] = []
        self.multiline_stack: list[tuple[list[str], int]] = []
        self.multiline_seq_depth = 0
        self.residue: str | None = None
        self.pending_def: Definition | None = None   # multi-line definition being read
        self.block_depth = 0
        self.random = random.Random(random_seed)
        self.environ = os.environ if environ is None else environ
        self.top_path = path
        self.last_where = Where(path, 0)
        self.opened_files: list[str] = []
        self._std_definitions()
        if text is not None:
            self.files.append(_OpenFile(iter(text.splitlines(keepends=True)), path, None))
            self.first_opened = True
        else:
            self.first_opened = self._open_glob(path, required=True, top=True)

    # -- position ----------------------------------------------------------
    def where(self) -> Where:
        if not self.files:
            return self.last_where     # at the end: the last line read
        f = self.files[-1]
        return Where(f.path, f.line_no)

    def report(self, level: Level, message: str) -> None:
        self.diags.add(level, message, self.where())

    # -- standard definitions ---------------------------------------------
    def _std_definitions(self) -> None:
        self.defs["_PWD"] = Definition(fn=lambda _p: self._cwd())
        self.defs["_INSTANCE"] = Definition(fn=lambda _p: self.config_id or "")
        self.defs["_RANDOM"] = Definition(fn=self._random, max_params=2)
        # Stand-ins that survive the comment stripping done after expansion (which
        # in 2.2.7 turns an unquoted ${_HASH} into a comment); put back at the end.
        self.defs["_HASH"] = Definition(value=_LITERAL_HASH)
        self.defs["_BANG"] = Definition(value=_LITERAL_BANG)
        self.defs["_ENV"] = Definition(fn=self._env, max_params=1)

    def _cwd(self) -> str:
        path = self.files[-1].path if self.files else self.top_path
        return os.path.dirname(os.path.abspath(path))

    def _random(self, params: str | None) -> str:
        lo, hi = 0, 32767
        if params:
            nums = params.split()
            lo = int(nums[0])
            if len(nums) > 1:
                hi = int(nums[1])
        if hi < lo:
            lo, hi = hi, lo
        return str(self.random.randint(lo, hi))

    def _env(self, params: str | None) -> str:
        return self.environ.get(params or "", "")

    def set_random_seed(self, seed: int) -> None:
        self.random.seed(seed)

    # -- files -------------------------------------------------------------
    def _resolve(self, pattern: str) -> str:
        if os.path.isabs(pattern) or not self.files:
            return pattern
        return os.path.join(os.path.dirname(self.files[-1].path), pattern)

    def _open_glob(self, pattern: str, required: bool = False, top: bool = False) -> bool:
        if len(self.files) >= MAX_INCLUDE_DEPTH:
            self.report(Level.FATAL, f"Includes nested more than {MAX_INCLUDE_DEPTH} deep "
                        f"(an include loop?) - not opening '{pattern}'")
            return False
        resolved = self._resolve(pattern)
        paths = _expand_glob(resolved)
        if not paths:
            if required:
                self.diags.add(Level.FILE_NOT_FOUND,
                               f"Unable to find configuration file {pattern}", None)
            else:
                self.report(Level.NOTE, f"Config files missing '{pattern}'.")
            return False
        opened = False
        for path in reversed(paths):       # stack: the first match is read first
            f = self._open_one(path, required)
            if f is not None:
                if not top or len(paths) > 1:
                    f.display = path
                self.files.append(f)
                opened = True
        return opened

    def _open_one(self, path: str, required: bool) -> _OpenFile | None:
        level = Level.FILE_NOT_FOUND if required else Level.NOTE
        where = self.where() if self.files else None
        try:
            st = os.stat(path)
        except OSError as e:
            self.diags.add(level, f"Configuration file '{path}' cannot be read ({e.strerror})",
                           where)
            return None
        if stat.S_ISDIR(st.st_mode):
            self.diags.add(level, f"Configuration file '{path}' is a directory - skipping", where)
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o111:
            self.diags.add(level, f"Configuration file '{path}' is not a regular "
                           "non-executable file - skipping", where)
            return None
        if any(os.path.samefile(path, f.path) for f in self.files if os.path.exists(f.path)):
            self.diags.add(Level.GENERAL_ERROR,
                           f"Configuration file '{path}' includes itself - skipping", where)
            return None
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by _physical_lines
        except OSError as e:
            self.diags.add(level, f"Configuration file '{path}' open problem "
                           f"({e.strerror}) - skipping", where)
            return None
        self.opened_files.append(path)
        return _OpenFile(_physical_lines(handle), path, None)

    # -- reading -----------------------------------------------------------
    def __iter__(self) -> Iterator[LogicalLine]:
        while True:
            line = self.next_line()
            if line is None:
                return
            yield line

    def _next_raw(self) -> tuple[str, bool] | None:
        """The next line to preprocess, and whether it came straight from a file."""
        if self.residue is not None:
            text, self.residue = self.residue, None
            return text, False
        if self.seqs and len(self.seqs) > self.multiline_seq_depth:
            seq = self.seqs[-1]
            text, more = seq.emit(self.defs)
            if not more:
                self.seqs.pop()
            return text, False
        if self.multiline_next:
            text = self.multiline_next.pop()
            if not self.multiline_next:
                if self.multiline_stack:
                    self.multiline_next, self.multiline_seq_depth = self.multiline_stack.pop()
                else:
                    self.multiline_seq_depth = 0
            return text, False
        while self.files:
            f = self.files[-1]
            raw = next(f.lines, False)
            if raw is False:
                self.last_where = Where(f.path, f.line_no)
                self.files.pop()
                continue
            f.line_no += 1
            if raw is None:
                self.report(Level.GENERAL_ERROR,
                            f"Line longer than {MAX_LINE} bytes - ignoring it")
                continue
            text = raw.rstrip("\r\n")
            if self.pending_def is not None and not text:
                self.pending_def = None
            if not text:
                continue
            if _NEEDS_DECOMMENT.search(text):
                text = decomment(text, self.diags, self.where())
            else:
                text = text.strip(" \t")
            if text:
                return text, True
        return None

    def next_line(self) -> LogicalLine | None:
        while True:
            got = self._next_raw()
            if got is None:
                return None
            text, from_file = got
            if self.pending_def is not None and from_file:
                self._continue_definition(text)
                continue
            text = self._preprocess(text)
            if not text:
                continue
            if self._check_include(text):
                continue
            line = self._split_braces(text)
            line.text = line.text.replace(_LITERAL_HASH, "#").replace(_LITERAL_BANG, "!")
            return line

    def _continue_definition(self, text: str) -> None:
        d = self.pending_def
        assert d is not None
        more = text.endswith("\\")
        if more:
            text = text[:-1].rstrip(" \t") + "\n"
        else:
            self.pending_def = None
        if len(text) >= 2 or (text and not more):
            d.value += text
        if not more and not d.value:
            d.multiline = False

    def _preprocess(self, text: str) -> str:
        expansions = 0
        while True:
            if text.startswith("@"):
                neg = text.startswith("@^")
                body = text[2:] if neg else text[1:]
                m = re.search(r"[ \t]", body)
                if not m:
                    return ""
                ident = body[: m.start()]
                if (self.config_id is not None and ident == self.config_id) == neg:
                    return ""
                text = body[m.start():].lstrip(" \t")
            if text.startswith("$") and self._check_definition(text):
                return ""
            if text.startswith("~SEQ") or text.startswith("~LST"):
                ok = self._add_seq(text) if text[1] == "S" else self._add_lst(text)
                if not ok:
                    kind = text[:4]
                    self.report(Level.GENERAL_ERROR, f"Invalid {kind} specification '{text}'")
                return ""
            if text.startswith("~") or "$" not in text:
                return text
            replaced, text, count = self._replace_params(text)
            expansions += count
            if not replaced:
                return text
            if expansions > MAX_EXPANSIONS or len(text) > MAX_LINE:
                self.report(Level.GENERAL_ERROR,
                            "Definition expansion does not terminate (a definition that "
                            "refers to itself?) - ignoring the line")
                return ""
            text = decomment(text, self.diags, self.where())
            if not (text.startswith("@") or "$" in text):
                return text

    # $NAME=VALUE
    def _check_definition(self, text: str) -> bool:
        m = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)=", text)
        if not m:
            return False
        value = text[m.end():].lstrip(" \t")
        d = Definition()
        if value.endswith("\\"):
            value = value[:-1].rstrip(" \t")
            d.multiline = True
            d.value = value + "\n" if value else ""
            self.pending_def = d
        else:
            d.value = value
        self.defs[m.group(1)] = d
        return True

    def _find_use(self, text: str, pos: int) -> tuple[Definition, int, str | None] | None:
        """Is there a use of a definition at ``text[pos] == '$'``?  Returns the
        definition, the length of the use and any parameters."""
        m = _USE.match(text, pos)
        if not m:
            return None
        braces = m.group(1) is not None
        name = m.group(2)
        end = m.end()
        params = None
        if braces:
            env = _ENV_PARAM.match(text, end) if name == "_ENV" else None
            if env:     # ${_ENV VAR} (keepalived 2.4.0) takes a variable name
                params = env.group(1)
                end = env.end()
            else:
                raw = _NUM_PARAMS.match(text, end).group(0)  # type: ignore[union-attr]
                if raw.strip():
                    if raw != raw.rstrip(" "):
                        return None
                    params = raw.strip()
                elif raw:
                    return None
                end += len(raw)
            if text[end : end + 1] != "}":
                return None
            end += 1
        elif text[end : end + 1] not in ("", " ", "\t", ",", ")"):
            return None
        d = self.defs.get(name)
        if d is None:
            return None
        if d.multiline and end != len(text):
            return None     # a multi-line definition can only end a line
        if params is not None and not d.max_params:
            return None
        return d, end - pos, params

    def _replace_params(self, text: str) -> tuple[bool, str, int]:
        pos = 0
        found = False
        count = 0
        while True:
            pos = text.find("$", pos)
            if pos < 0 or pos + 1 >= len(text):
                break
            use = self._find_use(text, pos)
            if use is None:
                pos += 1
                continue
            d, length, params = use
            found = True
            count += 1
            if count > MAX_EXPANSIONS or len(text) > MAX_LINE:
                break
            value = d.fn(params) if d.fn else d.value
            if d.multiline:
                first, _, rest = value.partition("\n")
                if self.multiline_next:
                    self.multiline_stack.append((self.multiline_next,
                                                 self.multiline_seq_depth))
                self.multiline_seq_depth = len(self.seqs)
                following = rest.split("\n") if rest else []
                if following and following[-1] == "":
                    following.pop()
                self.multiline_next = following[::-1]
                value = first
            text = text[:pos] + value + text[pos + length :]
            if value.lstrip(" \t").startswith("~"):
                break
        return found, text, count

    # ~SEQ(var, start, step, end) text
    def _add_seq(self, text: str) -> bool:
        m = re.match(r"~SEQ(x?)[ \t]*\([ \t]*([^ \t,)]+)[ \t]*,([^)]*)\)[ \t]*(.*)$", text,
                     re.S)
        if not m:
            return False
        hexa, var, args, rest = m.groups()
        args = self._expand_inline(args)
        try:
            nums = [int(a.strip(), 0) for a in args.split(",")]
        except ValueError:
            return False
        if len(nums) == 1:
            end = nums[0]
            step = -1 if end < 1 else 1
            start = -1 if end < 0 else 1
        elif len(nums) == 2:
            start, end = nums
            step = 1 if start <= end else -1
        elif len(nums) == 3:
            start, step, end = nums
            if not step or (start < end and step < 0) or (start > end and step > 0):
                self.report(Level.GENERAL_ERROR, f"Invalid ~SEQ values '{text}'")
                return True
        else:
            return False
        if hexa and (start < 0 or end < 0):
            self.report(Level.GENERAL_ERROR, f"~SEQx is only valid for positive numbers '{text}'")
            return True
        if (step > 0 and start > end) or (step < 0 and start < end):
            return True
        self.seqs.append(_Seq(text=rest, where=self.where(), var=var, next=start, step=step,
                              last=end, hex=bool(hexa)))
        return True

    def _expand_inline(self, text: str) -> str:
        if "$" not in text:
            return text
        saved = (self.multiline_next, self.multiline_stack[:], self.multiline_seq_depth)
        _, out, _ = self._replace_params(text)
        self.multiline_next, self.multiline_stack, self.multiline_seq_depth = saved
        return out

    # ~LST(var, v1, v2) text  |  ~LST({a, b}, {1, 2}, {3, 4}) text
    def _add_lst(self, text: str) -> bool:
        p = _Cursor(text, 4)
        p.blank()
        if not p.take("("):
            return False
        p.blank()
        grouped = p.take("{")
        names: list[str] = []
        while True:
            p.blank()
            names.append(p.word(" \t,}"))
            p.blank()
            if grouped and p.take("}"):
                break
            if not grouped and p.peek() == ",":
                break
            if not p.take(","):
                return False
        p.blank()
        if not p.take(","):
            return False
        rows: list[list[str]] = []
        while True:
            p.blank()
            group = p.take("{")
            row: list[str] = []
            while True:
                p.blank()
                row.append(p.word(" \t,})"))
                p.blank()
                if group and p.take("}"):
                    break
                if not group and p.peek() in (",", ")"):
                    break
                if not p.take(","):
                    return False
                if len(row) > len(names):
                    break
            if len(row) > len(names):
                self.report(Level.GENERAL_ERROR,
                            f"~LST specification has too many values '{text}'")
                return True
            row += [""] * (len(names) - len(row))
            rows.append(row)
            p.blank()
            if p.take(")"):
                break
            if not p.take(","):
                return False
        p.blank()
        if not names or not rows:
            return False
        self.seqs.append(_Seq(text=p.rest(), where=self.where(), names=names, rows=rows))
        return True

    # include / includer / includem / includew / includeb / includea
    def _check_include(self, text: str) -> bool:
        m = _INCLUDE.match(text) if text.startswith("include") else None
        if not m:
            return False
        self._open_glob(m.group(2).lstrip(" \t"))
        return True

    # "{" and "}" outside double quotes end a logical line
    def _split_braces(self, text: str) -> LogicalLine:
        where = self.where()
        if "{" not in text and "}" not in text:
            return LogicalLine(text.rstrip(" \t"), where)
        if text[0] in "{}":
            cut = 1
        else:
            cut = None
            i = 0
            while i < len(text):
                c = text[i]
                if c == '"':
                    close = text.find('"', i + 1)
                    if close < 0:
                        break
                    i = close + 1
                    continue
                if c in "{}":
                    cut = i
                    break
                i += 1
        if cut is not None:
            rest = text[cut:].lstrip(" \t") if cut else text[1:].lstrip(" \t")
            rest = rest.rstrip(" \t")
            if rest:
                self.residue = rest
            text = text[:cut]
        text = text.rstrip(" \t")
        if text == "{":
            self.block_depth += 1
        elif text == "}":
            self.block_depth -= 1
            if self.block_depth < 0:
                self.diags.add(Level.UNEXPECTED_EOB, "Extra '}' found", where)
                self.block_depth = 0
        return LogicalLine(text, where)


def _physical_lines(handle) -> Iterator[str | None]:
    """The file's lines, decoded; None for a line too long to take."""
    with handle:
        while True:
            raw = handle.readline(MAX_LINE + 1)
            if not raw:
                return
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):
                    raw = handle.readline(MAX_LINE + 1)
                yield None
                continue
            yield raw.decode("utf-8", errors="surrogateescape").replace("\0", "\ufffd")


class _Cursor:
    def __init__(self, text: str, pos: int) -> None:
        self.text, self.pos = text, pos

    def blank(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def take(self, c: str) -> bool:
        if self.peek() == c:
            self.pos += 1
            return True
        return False

    def word(self, stops: str) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in stops:
            self.pos += 1
        return self.text[start : self.pos]

    def rest(self) -> str:
        return self.text[self.pos :]


def _expand_glob(pattern: str) -> list[str]:
    """Expand a keepalived include pattern: csh braces, then shell wildcards."""
    matches: list[str] = []
    for alternative in _brace_expand(pattern):
        if glob.has_magic(alternative):
            matches.extend(sorted(glob.glob(alternative)))
        elif os.path.lexists(alternative):
            matches.append(alternative)
    return matches


def _brace_expand(pattern: str) -> list[str]:
    depth = 0
    start = -1
    for i, c in enumerate(pattern):
        if c == "\\":
            continue
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}" and depth:
            depth -= 1
            if depth == 0:
                inner = pattern[start + 1 : i]
                parts, level, last = [], 0, 0
                for j, ch in enumerate(inner):
                    if ch == "{":
                        level += 1
                    elif ch == "}":
                        level -= 1
                    elif ch == "," and level == 0:
                        parts.append(inner[last:j])
                        last = j + 1
                parts.append(inner[last:])
                if len(parts) == 1:
                    continue
                head, tail = pattern[:start], pattern[i + 1 :]
                out: list[str] = []
                for part in parts:
                    out.extend(_brace_expand(head + part + tail))
                return out
    return [pattern]
