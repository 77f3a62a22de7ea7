"""The text layer: what keepalived 2.2.7 turns a file into, line by line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from keepalived_py.config.diag import Diagnostics, Level
from keepalived_py.config.lexer import Preprocessor, decomment, split_tokens


def lines_of(text: str, config_id: str | None = "node", **kw) -> list[str]:
    pre = Preprocessor("t.conf", Diagnostics(), config_id, text=text, **kw)
    return [line.text for line in pre]


def read(path: Path, config_id: str = "node") -> tuple[list[tuple[str, str, int]], Diagnostics]:
    diags = Diagnostics()
    pre = Preprocessor(str(path), diags, config_id)
    out = [(ln.text, os.path.basename(ln.where.file), ln.where.line) for ln in pre]
    return out, diags


def test_comments_hash_and_bang_but_not_in_quotes() -> None:
    text = 'a b # c\nd ! e\nf "g # h" ! i\nj \\# k\n'
    assert lines_of(text) == ["a b", "d", 'f "g # h"', "j # k"]


def test_braces_split_one_line_blocks() -> None:
    assert lines_of("vrrp_instance X { state MASTER }\n") == [
        "vrrp_instance X", "{", "state MASTER", "}"]
    assert lines_of('script "a { b }" {\n') == ['script "a { b }"', "{"]


def test_words_quotes() -> None:
    assert split_tokens('notify "/bin/x a b" root') == ["notify", "/bin/x a b", "root"]
    assert split_tokens('a"b c"') == ["a", "b c"]


def test_unterminated_quote_is_reported() -> None:
    diags = Diagnostics()
    decomment('a "b', diags, None)  # type: ignore[arg-type]
    assert diags.items[0].level is Level.GENERAL_ERROR


def test_conditional_lines() -> None:
    text = "@node a\n@other b\n@^node c\n@^other d\n@node\n"
    assert lines_of(text) == ["a", "d"]
    assert lines_of(text, config_id=None) == ["c", "d"]


def test_definitions_single_line() -> None:
    text = "$IF=eth0\n$V=1\ninterface $IF\nx ${IF}:1 $V,$V\n$IF=eth1\ny $IF\n$UNDEF z\n"
    assert lines_of(text) == ["interface eth0", "x eth0:1 1,1", "y eth1", "$UNDEF z"]


def test_definition_needs_no_space_before_equals() -> None:
    assert lines_of("$A = 1\n") == ["$A = 1"]


def test_multiline_definition() -> None:
    text = ("$BLOCK= \\\n"
            "   virtual_ipaddress { \\\n"
            "      198.18.0.1 \\\n"
            "   }\n"
            "vrrp_instance A {\n"
            "$BLOCK\n"
            "}\n")
    assert lines_of(text) == ["vrrp_instance A", "{", "virtual_ipaddress", "{",
                              "198.18.0.1", "}", "}"]


def test_definitions_nest() -> None:
    assert lines_of("$A=x\n$B=$A y\nz $B\n") == ["z x y"]


def test_standard_definitions(tmp_path: Path) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text("a ${_PWD}\nb ${_INSTANCE}\nc ${_HASH}x${_BANG} # comment\n"
                    "d ${_ENV KPY_TEST_VAR}\n")
    os.environ["KPY_TEST_VAR"] = "/home/x"
    got, _ = read(conf, config_id="n1")
    # keepalived 2.2.7 strips comments again after expansion, so an unquoted
    # ${_HASH} starts a comment there; we keep it literal, as it was meant.
    assert [g[0] for g in got] == [f"a {tmp_path}", "b n1", "c #x!", "d /home/x"]


def test_random_in_range() -> None:
    for _ in range(20):
        (line,) = lines_of("r ${_RANDOM 5 7}\n")
        assert 5 <= int(line.split()[1]) <= 7


def test_seq_and_hex_seq() -> None:
    assert lines_of("~SEQ(i, 1, 2, 5) vrid $i\n") == ["vrid 1", "vrid 3", "vrid 5"]
    assert lines_of("~SEQ(i, 3) x $i\n") == ["x 1", "x 2", "x 3"]
    assert lines_of("~SEQx(i, 9, 11) a ${i}\n") == ["a 9", "a a", "a b"]


def test_nested_seq() -> None:
    assert lines_of("~SEQ(i, 2) ~SEQ(j, 2) p $i $j\n") == [
        "p 1 1", "p 1 2", "p 2 1", "p 2 2"]


def test_lst() -> None:
    assert lines_of("~LST(v, a, b) x $v\n") == ["x a", "x b"]
    assert lines_of("~LST({n, m}, {1, 2}, {3, 4}) ${n}-$m\n") == ["1-2", "3-4"]
    # "$n-" is not a use: a name must end at a blank, ",", ")" or the line's end
    assert lines_of("~LST(n, 1) $n-x\n") == ["$n-x"]


def test_include_glob_braces_relative_and_nested(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.conf").write_text("from_a\ninclude ../inner.inc\n")
    (tmp_path / "d" / "b.conf").write_text("from_b\n")
    (tmp_path / "inner.inc").write_text("from_inner\n")
    (tmp_path / "top.conf").write_text("first\ninclude d/*.conf\ninclude d/{b,x}.conf\nlast\n")
    got, diags = read(tmp_path / "top.conf")
    assert [(g[0], g[1], g[2]) for g in got] == [
        ("first", "top.conf", 1), ("from_a", "a.conf", 1), ("from_inner", "inner.inc", 1),
        ("from_b", "b.conf", 1), ("from_b", "b.conf", 1), ("last", "top.conf", 4)]
    assert diags.highest() is Level.OK


def test_missing_include_is_noted_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "top.conf").write_text("include nothere/*.conf\n")
    got, diags = read(tmp_path / "top.conf")
    assert got == []
    assert [d.level for d in diags] == [Level.NOTE]
    assert diags.items[0].where.line == 1


# -- bad input: a diagnostic with file and line, never a traceback or a hang --

def test_include_loop(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("x\ninclude b.conf\n")
    (tmp_path / "b.conf").write_text("include a.conf\ny\n")
    got, diags = read(tmp_path / "a.conf")
    assert [g[0] for g in got] == ["x", "y"]
    (err,) = [d for d in diags if d.level > Level.OK]
    assert "includes itself" in err.message
    assert (os.path.basename(err.where.file), err.where.line) == ("b.conf", 1)


def test_self_referential_definition_does_not_hang() -> None:
    diags = Diagnostics()
    pre = Preprocessor("t.conf", diags, "n", text="$IF=$IF\ninterface $IF\nnext\n")
    assert [ln.text for ln in pre] == ["next"]
    assert diags.items[0].where.line == 2
    assert "does not terminate" in diags.items[0].message


def test_growing_definition_does_not_hang() -> None:
    diags = Diagnostics()
    pre = Preprocessor("t.conf", diags, "n", text="$A=x $A\nv $A\n")
    assert list(pre) == []
    assert diags.highest() is Level.GENERAL_ERROR


def test_binary_garbage(tmp_path: Path) -> None:
    conf = tmp_path / "bin.conf"
    conf.write_bytes(bytes(range(256)) * 40)
    got, diags = read(conf)      # no exception is the point; the parser reports words
    assert isinstance(got, list)


def test_ten_megabyte_line(tmp_path: Path) -> None:
    conf = tmp_path / "long.conf"
    conf.write_bytes(b"a\n" + b"x" * (10 << 20) + b"\nb\n")
    got, diags = read(conf)
    assert [g[0] for g in got] == ["a", "b"]
    (err,) = list(diags)
    assert err.where.line == 2 and "longer than" in err.message


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unusable_top_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "k.conf"
    if kind == "directory":
        path.mkdir()
    got, diags = read(path)
    assert got == []
    assert diags.highest() is Level.FILE_NOT_FOUND
    assert str(path) in diags.items[0].message


def test_unreadable_file_names_it() -> None:
    """Root reads any file, so as root we read with the effective uid of nobody."""
    import pwd
    import shutil
    import tempfile
    tmp_path = Path(tempfile.mkdtemp(prefix="kpy-unreadable-"))   # reachable by nobody
    top = tmp_path / "k.conf"
    secret = tmp_path / "secret.conf"
    top.write_text("a\ninclude secret.conf\nb\n")
    secret.write_text("hidden\n")
    secret.chmod(0o200)
    as_root = os.geteuid() == 0
    if as_root:
        tmp_path.chmod(0o755)
        top.chmod(0o644)
        os.seteuid(pwd.getpwnam("nobody").pw_uid)
    try:
        got, diags = read(top)
    finally:
        if as_root:
            os.seteuid(0)
        shutil.rmtree(tmp_path)
    assert [g[0] for g in got] == ["a", "b"]
    (err,) = list(diags)
    assert (os.path.basename(err.where.file), err.where.line) == ("k.conf", 2)
    assert "secret.conf" in err.message and "Permission denied" in err.message
