# Copyright (c) 2026, keepalived-py developers
# GNU General Public License v2.0+ (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
# SPDX-License-Identifier: GPL-2.0-or-later

"""keepalived_config, controller side: render, read with the agent's parser, name errors.

Structured variables become keepalived.conf text mechanically (see ``Generator``),
with a *line map*: for every line of that text, the variable it came from
(``instances[1].advert_int``).  The agent's own parser and checks read the text;
each diagnostic's line is looked up in the map, so an error names the variable.
Raw ``content`` is read the same way and its diagnostics name its lines.  Any
error fails the task here, before the host is contacted.

What is sent to the module is the agent's canonical rendering of the model read
(after a header line): equal input, equal bytes.  The module has the installed
agent check that file on the host (``-t``), whose diagnostics name lines of the
canonical text; ``Names`` takes them back through the model to the variable.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible.plugins.action import ActionBase
from ansible_collections.keepalived_py.ha.agent.config import parse, validate
from ansible_collections.keepalived_py.ha.agent.config.diag import (
    Diagnostic,
    Diagnostics,
    Invalid,
    Level,
)
from ansible_collections.keepalived_py.ha.agent.config.keywords import ROOT
from ansible_collections.keepalived_py.ha.agent.config.lexer import Preprocessor, split_tokens
from ansible_collections.keepalived_py.ha.agent.config.model import Node
from ansible_collections.keepalived_py.ha.agent.config.parser import ParseResult
from ansible_collections.keepalived_py.ha.agent.config.render import (
    INDENT,
    RenderError,
    quote,
    render,
)
from ansible_collections.keepalived_py.ha.agent.config.schema import BlockSpec, Ctx, Kw
from ansible_collections.keepalived_py.ha.agent.config.validate import DEFAULT_SCRIPT_USER, vs_name
from ansible_collections.keepalived_py.ha.plugins.module_utils.keepalived_config import (
    ARGUMENT_SPEC,
    HEADER,
    HEADER_LINES,
    MUTUALLY_EXCLUSIVE,
    REQUIRED_ONE_OF,
    SECTIONS,
    mask_secrets,
)

MODULE = "keepalived_py.ha.keepalived_config"
_KEYWORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INCLUDE = re.compile(r"include[rmwba]?\Z")           # the lexer's include keywords
_INCLUDE_LINE = re.compile(r"(?:@\^?\S+[ \t]+)?include[rmwba]?[ \t]")
_ENV_USE = re.compile(r"\$\{?_ENV\b")
_UNREAD = object()


class ConfigErrors(Exception):
    """The configuration cannot be used; ``errors`` name variables or lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


# -- structured variables -> text, with a line map ----------------------------------

@dataclass
class Generated:
    """keepalived.conf text made from variables; ``paths[n - 1]`` names line ``n``."""

    lines: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)


def _reads(kw: Kw, words: list[str]) -> Any:
    """What the keyword's own value type makes of ``words``, or ``_UNREAD`` if it
    refuses them: the agent's schema decides, not a table of ours."""
    if kw.block is not None or kw.lines is not None:
        return _UNREAD
    refused: list[Level] = []
    ctx = Ctx(lambda level, _msg: refused.append(level), kw.name)
    try:
        value = kw.arg.parse(list(words), ctx)
    except Invalid:
        return _UNREAD
    return _UNREAD if any(_kind(level) == "error" for level in refused) else value


def _read_as_written(word: str) -> bool:
    """Does keepalived's reader give ``word`` back from ``quote(word)``?

    It expands its definitions (``$NAME``, ``${NAME}``) on the whole line, inside
    quotes too, and has no escape for ``$``; whether a ``$`` starts a use depends on
    what follows it, quote included.  The agent's own reader decides, not a rule of ours.
    """
    try:
        line = f"k {quote(word)}\n"
    except RenderError:
        return True         # not written at all: emit() says why
    reader = Preprocessor("-", Diagnostics(), config_id=None, environ={}, text=line)
    return [split_tokens(logical.text) for logical in reader] == [["k", word]]


def _changed_by_reader(words: list[str]) -> bool:
    return any("$" in word and not _read_as_written(word) for word in words)


_EXPANDED = ("cannot be written as keepalived.conf: keepalived would replace a $NAME or "
             "${NAME} in it (its definitions, such as $_PWD or ${_RANDOM}, are expanded even "
             "inside quotes, and $ has no escape)")


def _one_line(kw: Kw | None) -> bool:
    """A keyword whose words all sit on its own line (not a block of any kind)."""
    return kw is not None and kw.block is None and kw.lines is None


class Generator:
    """Writes variables as keepalived.conf, mechanically:

    - a string or a number: the keyword's value, one word (quoted when needed);
    - ``true``: the bare keyword (``keyword true`` where bare would not mean true);
    - ``false``: left out, or ``keyword false`` where the keyword reads that word;
    - ``null``: left out;
    - a dict: a nested block;
    - a list: a block with one item a line (a string item is the line's words, a
      list item the words themselves); a list of dicts under a block keyword:
      one block per dict, named by its ``name``; a list given to a keyword that
      takes words on its own line: those words.

    The agent's keyword table is consulted only for the shape (one line or a
    block) and for how booleans read; the values are checked by the parser.
    """

    def __init__(self) -> None:
        self.out = Generated()

    def sections(self, args: Mapping[str, Any]) -> Generated:
        for option, keyword in SECTIONS:
            value = args.get(option)
            if value is None:
                continue
            spec = ROOT.keyword(keyword).block
            if isinstance(value, Mapping):
                self.block(0, keyword, [], value, spec, option)
                continue
            for index, item in enumerate(value):
                self.named_block(0, keyword, item, spec, f"{option}[{index}]")
        return self.out

    # lines -----------------------------------------------------------------------
    def emit(self, depth: int, words: list[str], path: str, opens: bool = False,
             keyword: bool = True) -> None:
        """One line; the first word is the keyword (never quoted) when ``keyword``."""
        try:
            quoted = [w if keyword and i == 0 else quote(w) for i, w in enumerate(words)]
        except RenderError as error:
            self.problem(path, str(error))
            return
        # a value the file cannot carry as it is: refused, not silently changed
        if _changed_by_reader(words[1:] if keyword else words):
            self.problem(path, _EXPANDED)
            return
        self.out.lines.append(INDENT * depth + " ".join(quoted) + (" {" if opens else ""))
        self.out.paths.append(path)

    def close(self, depth: int, path: str) -> None:
        self.out.lines.append(INDENT * depth + "}")
        self.out.paths.append(path)

    def problem(self, path: str, message: str) -> None:
        self.out.problems.append(f"{path}: {message}")

    # blocks ----------------------------------------------------------------------
    def named_block(self, depth: int, keyword: str, item: Any, spec: BlockSpec | None,
                    path: str) -> None:
        if not isinstance(item, Mapping):
            self.problem(path, f"must be a dict of {keyword} keywords")
            return
        name = item.get("name")
        if spec is not None and spec.head is None:
            # a block without a name (TCP_CHECK, url): every key is a keyword
            self.block(depth, keyword, [], item, spec, path)
            return
        head = self.line_words(name, f"{path}.name") if name is not None else None
        if not head:
            self.problem(f"{path}.name", f"missing: every {keyword} needs a name")
            return
        if _changed_by_reader(head):
            self.problem(f"{path}.name", _EXPANDED)
            return
        body = {key: value for key, value in item.items() if key != "name"}
        self.block(depth, keyword, head, body, spec, path)

    def block(self, depth: int, keyword: str, head: list[str], body: Mapping[str, Any],
              spec: BlockSpec | None, path: str) -> None:
        self.emit(depth, [keyword, *head], path, opens=True)
        for key, value in body.items():
            self.entry(depth + 1, key, value, spec, f"{path}.{key}")
        self.close(depth, path)

    def entry(self, depth: int, key: Any, value: Any, spec: BlockSpec | None,
              path: str) -> None:
        if not isinstance(key, str) or not _KEYWORD.match(key):
            self.problem(path, "not a keepalived keyword")
            return
        if _INCLUDE.match(key):
            self.problem(path, "include is not supported: the file is rendered on the "
                               "controller as one text")
            return
        kw = spec.lookup(key) if spec is not None else None
        if value is None:
            return
        if isinstance(value, bool):
            self.boolean(depth, key, value, kw, path)
        elif isinstance(value, Mapping):
            self.block(depth, key, [], value, kw.block if kw else None, path)
        elif isinstance(value, (list, tuple)):
            self.listing(depth, key, value, kw, path)
        else:
            word = self.word(value, path)
            if word is not None:
                self.emit(depth, [key, word], path)

    def boolean(self, depth: int, key: str, value: bool, kw: Kw | None, path: str) -> None:
        if value:
            bare_is_true = kw is None or _reads(kw, []) is True
            self.emit(depth, [key] if bare_is_true else [key, "true"], path)
        elif kw is not None and _reads(kw, ["false"]) is False:
            self.emit(depth, [key, "false"], path)

    def listing(self, depth: int, key: str, items: list | tuple, kw: Kw | None,
                path: str) -> None:
        if _one_line(kw):
            words = self.words(items, path)
            if words is not None:
                self.emit(depth, [key, *words], path)
            return
        if kw is not None and kw.block is not None and kw.repeat \
                and all(isinstance(item, Mapping) for item in items):
            for index, item in enumerate(items):
                self.named_block(depth, key, item, kw.block, f"{path}[{index}]")
            return
        self.emit(depth, [key], path, opens=True)
        for index, item in enumerate(items):
            item_path = f"{path}[{index}]"
            words = self.line_words(item, item_path)
            if words is None:
                continue
            if not words or words[0] in ("{", "}"):
                self.problem(item_path, "an item must be a line of words, not empty or a brace")
                continue
            self.emit(depth + 1, words, item_path, keyword=False)
        self.close(depth, path)

    # words -----------------------------------------------------------------------
    def word(self, value: Any, path: str) -> str | None:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
        self.problem(path, f"must be a string, a number or a boolean, not {type(value).__name__}")
        return None

    def words(self, values: list | tuple, path: str) -> list[str] | None:
        words = [self.word(v, f"{path}[{i}]") for i, v in enumerate(values)]
        return None if None in words else words  # type: ignore[return-value]

    def line_words(self, value: Any, path: str) -> list[str] | None:
        """A line: a string is split at blanks, a list is its words, a number one word."""
        if isinstance(value, str):
            return value.split()
        if isinstance(value, (list, tuple)):
            return self.words(value, path)
        word = self.word(value, path)
        return None if word is None else [word]


# -- reading on the controller --------------------------------------------------------

def _kind(level: Level) -> str:
    """As agent/config/diag.py prints it: warnings (and script security, which
    keepalived reports and runs on) do not fail; notes do not count."""
    if level is Level.NOTE:
        return "note"
    return "warning" if level >= Level.WARNING else "error"


class _EveryInterface(frozenset):
    """Every interface name exists: the controller cannot see the target's links."""

    def __contains__(self, name: object) -> bool:
        return True


def read_config(text: str, dest: str, config_id: str) -> ParseResult:
    """The agent's parser and checks on ``text`` as the file ``dest`` of host ``config_id``.

    ``${_RANDOM}`` is seeded from the text (a random value drawn afresh on every
    run would make every run a change); ``${_ENV}`` is refused before this.
    Interfaces, users, groups and script files are the target's: taken as present
    here, the target's ``keepalived-py -t`` checks them before the file is replaced.
    """
    seed = zlib.crc32(f"{config_id}\0{text}".encode())
    result = parse(dest, config_id=config_id, text=text, random_seed=seed, environ={})
    validate(result, interfaces=_EveryInterface(), host_checks=False)
    return result


def refused_in_content(text: str) -> list[str]:
    """Lines of raw content that would read the controller's files or environment."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if _INCLUDE_LINE.match(stripped):
            problems.append(f"line {number}: include is not supported: the file is rendered "
                            "on the controller as one text; put the included text in content")
        elif _ENV_USE.search(stripped):
            problems.append(f"line {number}: ${{_ENV}} is not supported: it would read the "
                            "controller's environment, not the host's")
    return problems


# -- naming places: lines of what was read, through the model ---------------------------

Key = tuple   # a place in the model: ("vrrp_instance", 0, "virtual_ipaddress", 2)


def places(root: Node, item_lines: bool) -> dict[Key, int]:
    """The line of every block, keyword and (``item_lines``) line-block item.

    Items are one a line right after their keyword's line in canonical text and
    in generated text, not necessarily in hand-written content.
    """
    found: dict[Key, int] = {}

    def walk(node: Node, prefix: Key) -> None:
        for name, value in node.values.items():
            kw = node.spec.keyword(name)
            if kw.block is not None:
                children = value if kw.repeat else [value]
                for index, child in enumerate(children):
                    key = (*prefix, name, index)
                    if child.where is not None:
                        found[key] = child.where.line
                    walk(child, key)
                continue
            where = node.value_where.get(name)
            if where is None:
                continue
            found[(*prefix, name)] = where.line
            if item_lines and kw.lines is not None:
                for index in range(len(value)):
                    found[(*prefix, name, index)] = where.line + 1 + index

    walk(root, ())
    return found


def named_block(root: Node, name: str, keyword: str | None = None) -> Key | None:
    """The one top-level block named ``name`` (of kind ``keyword`` when given)."""
    matches = [(kind, index) for kind, value in root.values.items()
               if isinstance(value, list) and keyword in (None, kind)
               for index, child in enumerate(value)
               if isinstance(child, Node) and str(child.head) == name]
    return matches[0] if len(matches) == 1 else None


# keepalived's messages without a line (agent/config/validate.py) that name a block:
# (pattern, the kind of block or None for any); ``key``, when matched, is the keyword.
_ABOUT_A_BLOCK = (
    (re.compile(r"\((?P<name>[^()\s]+)\) Ignoring (?P<key>track_interface) "), None),
    (re.compile(r"\((?P<name>[^()\s]+)\) Unknown (?P<key>interface)!"), None),
    (re.compile(r"\((?P<name>[^()\s]+)\) "), None),
    (re.compile(r"Sync group (?P<name>\S+) has only "), "vrrp_sync_group"),
    (re.compile(r"Disabling track script (?P<name>\S+) since "), "vrrp_script"),
)
_NOTIFY = ("notify_backup", "notify_master", "notify_fault", "notify_stop", "notify_deleted",
           "notify", "notify_master_rx_lower_pri")
# ... and those about keywords anywhere: message start -> {block: its keywords meant};
# no keywords: the blocks themselves.  The script lists are the ones validate.py counts.
_ABOUT_KEYWORDS: tuple[tuple[str, dict[str, tuple[str, ...]]], ...] = (
    ("SECURITY VIOLATION - start/shutdown scripts ",
     {"global_defs": ("startup_script", "shutdown_script")}),
    ("SECURITY VIOLATION - scripts ",
     {"global_defs": ("notify_fifo_script", "vrrp_notify_fifo_script"),
      "vrrp_script": ("script",), "vrrp_instance": _NOTIFY, "vrrp_sync_group": _NOTIFY}),
    ("SECURITY VIOLATION - check scripts ", {"virtual_server": ()}),
    # said only when script_user is not set: where it would go
    (f"Unable to set default user {DEFAULT_SCRIPT_USER} ", {"global_defs": ()}),
)


def about(root: Node, message: str) -> list[Key]:
    """The places a message without a line is about, in the model (possibly none)."""
    for pattern, kind in _ABOUT_A_BLOCK:
        m = pattern.match(message)
        key = named_block(root, m.group("name"), kind) if m else None
        if key is not None:
            return [(*key, m.group("key"))] if "key" in m.groupdict() else [key]
    for start, wanted in _ABOUT_KEYWORDS:
        if message.startswith(start):
            return _keywords(root, wanted)
    # a virtual server is told by its address (keepalived's FMT_VS), not by a name
    return [block for block, node in _blocks(root, "virtual_server")
            if re.search(rf"[Vv]irtual server {re.escape(vs_name(node))}\b", message)]


def _keywords(root: Node, wanted: Mapping[str, tuple[str, ...]]) -> list[Key]:
    found: list[Key] = []
    for kind, names in wanted.items():
        for block, node in _blocks(root, kind):
            if not names:
                found.append(block)
            found += [(*block, name) for name in names if name in node.values]
    return found


def _blocks(root: Node, kind: str) -> list[tuple[Key, Node]]:
    value = root.values.get(kind)
    children = value if isinstance(value, list) else [] if value is None else [value]
    return [((kind, index), child) for index, child in enumerate(children)]


class Names:
    """Names for the lines of the text the controller read: variables or content lines."""

    def __init__(self, result: ParseResult, name_line: Callable[[int], str | None],
                 item_lines: bool) -> None:
        self.result = result
        self.name_line = name_line
        self.places = places(result.root, item_lines)

    def of_key(self, key: Key | None) -> str | None:
        while key:
            if key in self.places:
                return self.name_line(self.places[key])
            key = key[:-1]              # an item of hand-written content: its keyword
        return None

    def of_message(self, message: str) -> str | None:
        """A message without a line, named by what it is about."""
        names = [self.of_key(key) for key in about(self.result.root, message)]
        return ", ".join(_unique([name for name in names if name])) or None

    def describe(self, diag: Diagnostic) -> str:
        name = self.name_line(diag.where.line) if diag.where is not None else \
            self.of_message(diag.message)
        return f"{name}: {diag.message}" if name else diag.message

    def diagnostics(self) -> tuple[list[str], list[str]]:
        """(errors, warnings) of the controller's reading, named."""
        errors, warnings = [], []
        for diag in self.result.diags:
            kind = _kind(diag.level)
            if kind != "note":
                (errors if kind == "error" else warnings).append(self.describe(diag))
        return errors, warnings

    def not_acted(self) -> list[str]:
        """What the agent reads but does not act on yet (its ``-t`` notes), named; the
        keywords of a block that is listed itself are left out."""
        names = _unique([self.name_line(where.line) or keyword
                         for keyword, where in self.result.not_acted.items()])
        return [name for name in names
                if not any(name.startswith((f"{block}.", f"{block}[")) for block in names)]


def names_of_variables(result: ParseResult, generated: Generated) -> Names:
    def name_line(line: int) -> str | None:
        return generated.paths[line - 1] if 0 < line <= len(generated.paths) else None
    return Names(result, name_line, item_lines=True)


def names_of_content(result: ParseResult, text: str) -> Names:
    lines = text.splitlines()

    def name_line(line: int) -> str | None:
        if not 0 < line <= len(lines):
            return None
        shown = mask_secrets(lines[line - 1].strip())
        return f"line {line} ({shown})" if shown else f"line {line}"
    return Names(result, name_line, item_lines=False)


# -- the rendering ----------------------------------------------------------------------

@dataclass
class Rendering:
    text: str                   # the file: header and canonical text
    warnings: list[str]
    not_acted: list[str]
    names: Names                # names for the lines read on the controller
    canonical: ParseResult      # the canonical text read back: its lines -> model places
    _by_line: dict[int, Key] | None = None

    def name_target_line(self, line: int | None, message: str) -> str:
        """A diagnostic of ``keepalived-py -t`` on the written file, named: its line
        of canonical text -> a place in the model -> the line read here -> a name."""
        if line is None:
            name = self.names.of_message(message)
        else:
            if self._by_line is None:
                self._by_line = {at: key for key, at in places(self.canonical.root, True).items()}
            name = self.names.of_key(self._by_line.get(line - HEADER_LINES)) or f"line {line}"
        return f"{name}: {message}" if name else message


def render_config(args: Mapping[str, Any], config_id: str) -> Rendering:
    """Read the configuration the task gives; raise ConfigErrors, or return the file."""
    dest = args["dest"]
    if args.get("content") is not None:
        text = args["content"]
        refused = refused_in_content(text)
        if refused:
            raise ConfigErrors(refused)
        result = read_config(text, dest, config_id)
        names = names_of_content(result, text)
    else:
        generated = Generator().sections(args)
        if generated.problems:
            raise ConfigErrors(generated.problems)
        result = read_config(generated.text, dest, config_id)
        names = names_of_variables(result, generated)
    errors, warnings = names.diagnostics()
    not_acted = names.not_acted()
    if not_acted:
        warnings.append("read but not acted on by this version of the agent yet: "
                        + ", ".join(not_acted))
    if result.files:
        errors.append("files were read on the controller (an include): "
                      + ", ".join(result.files))
    if errors:
        raise ConfigErrors(errors)
    text, canonical = canonical_text(result, dest)
    return Rendering(HEADER + text, warnings, not_acted, names, canonical)


def canonical_text(result: ParseResult, dest: str) -> tuple[str, ParseResult]:
    """The agent's rendering of the model, and that text read back, which must give
    the same model (parse(render(model)) == model)."""
    try:
        text = render(result.root)
    except RenderError as error:
        raise ConfigErrors([f"cannot be written as keepalived.conf: {error}"]) from None
    again = parse(dest, text=text)
    if again.root != result.root:
        raise ConfigErrors(["internal error: the agent's canonical text does not read back "
                            "as the same configuration (a renderer bug; please report it)"])
    return text, again


def default_config_id(task_vars: Mapping[str, Any]) -> str:
    """keepalived's default id is the host name up to the first dot."""
    facts = task_vars.get("ansible_facts") or {}
    hostname = facts.get("hostname") if isinstance(facts, Mapping) else None
    return str(hostname or task_vars.get("inventory_hostname_short") or "")


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict:
        self._supports_check_mode = True
        self._supports_async = False
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        _validation, args = self.validate_argument_spec(
            argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE,
            required_one_of=REQUIRED_ONE_OF)
        config_id = args["config_id"] or default_config_id(task_vars)
        try:
            rendering = render_config(args, config_id)
        except ConfigErrors as failure:
            return {**result, "failed": True, "changed": False, "errors": failure.errors,
                    "msg": f"the keepalived configuration has {len(failure.errors)} "
                           f"error(s); nothing was sent to the host: {failure}"}
        module_args = {key: args[key] for key in
                       ("dest", "backup", "reload", "agent", "control_socket", "namespace",
                        "agent_instance")}
        module_args["content"] = rendering.text
        try:
            result.update(self._execute_module(module_name=MODULE, module_args=module_args,
                                               task_vars=task_vars))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        self._name_target_diagnostics(result, rendering)
        if rendering.not_acted:
            result["not_acted"] = rendering.not_acted
        if args["return_rendered"]:
            result["rendered"] = mask_secrets(rendering.text)
        return result

    @staticmethod
    def _name_target_diagnostics(result: dict[str, Any], rendering: Rendering) -> None:
        """Turn the module's ``-t`` diagnostics (lines of the file) into named messages."""
        errors, warnings = [], []
        for diag in result.pop("diagnostics", None) or []:
            text = rendering.name_target_line(diag.get("line"), diag.get("message", ""))
            (errors if diag.get("kind") == "error" else warnings).append(text)
        if result.get("failed") and errors:
            result["errors"] = errors
            result["msg"] = "the agent on the host refused the configuration: " \
                + "; ".join(errors)
        merged = _unique([*rendering.warnings, *warnings, *result.get("warnings", [])])
        if merged:
            result["warnings"] = merged
