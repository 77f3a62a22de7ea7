"""keepalived_check.data (the checker's SIGUSR1 dump) of ours and of keepalived 2.2.7,
made comparable line by line.

``normalise`` takes out what legitimately differs between two runs of the same
configuration in the same state: times (a MISC_CHECK's last run) and each side's own
directory in paths.  ``compare`` then lines up the two dumps and takes out, on both
sides, the lines listed in ``DIFFERENCES``, each with its key in
docs/lb-differences.md (``check-data-dump``): what is left must be equal.
Used by tests/unit/test_check_dump.py (against a dump keepalived wrote in the VM
tier, kept in tests/unit/data) and by the VM tier itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ANCHOR = "check-data-dump"                  # the differences' entry in docs/lb-differences.md
# values of the moment: when a MISC_CHECK last started its script
TIME_LINES = re.compile(r"^(   Last ran = ).*$")


@dataclass(frozen=True)
class LineDifference:
    """Lines starting with ``prefix`` that one side writes and the other does not, or
    writes with another value: ``theirs_only`` (keepalived writes it, we do not),
    else both write it and the value differs (``ours`` is what we write)."""

    prefix: str
    reason: str
    theirs_only: bool = False


DIFFERENCES: tuple[LineDifference, ...] = (
    LineDifference(" libnftnl version ", "a build detail of keepalived's: we link no libnftnl",
                   theirs_only=True),
    LineDifference(" umask = ", "keepalived sets its umask to 0177; we keep the one we were "
                   "started with (the files we create say their own modes)"),
)
# After a reload: keepalived's previous effective_weight is the effective weight the
# reload found, which our engine does not keep; we leave the line out there.
RELOADED_PREVIOUS_WEIGHT = "   previous effective_weight = "


def normalise(text: str, directory: str | None = None) -> list[str]:
    """The dump's lines with times masked and ``directory`` (the side's own, in the
    paths of its scripts, FIFO and track file) written ``DIR``."""
    out = []
    for line in text.splitlines():
        if directory:
            line = line.replace(directory, "DIR")
        out.append(TIME_LINES.sub(r"\1TIME", line))
    return out


def _without_reloaded_previous_weight(lines: list[str]) -> list[str]:
    """Drop the previous effective_weight line of each real server whose block says
    ``reloaded = 1`` (it comes after the weight line)."""
    out: list[str] = []
    block_start = 0
    for line in lines:
        if line == "   ------< Real server >------" or not line.startswith("   "):
            block_start = len(out)
        if line == "   reloaded = 1":
            out[block_start:] = [x for x in out[block_start:]
                                 if not x.startswith(RELOADED_PREVIOUS_WEIGHT)]
        out.append(line)
    return out


def comparable(ours: list[str], theirs: list[str]) -> tuple[list[str], list[str]]:
    """Both dumps with the listed differences taken out."""
    def keep(line: str, side: str) -> str | None:
        for d in DIFFERENCES:
            if line.startswith(d.prefix):
                if d.theirs_only:
                    return None if side == "theirs" else line
                return d.prefix + "<differs>"
        return line
    ours = [x for x in (keep(line, "ours") for line in ours) if x is not None]
    theirs = [x for x in (keep(line, "theirs") for line in theirs) if x is not None]
    return (_without_reloaded_previous_weight(ours),
            _without_reloaded_previous_weight(theirs))


CONFIG_SECTIONS = ("------< Global definitions >------", "------< SSL definitions >------",
                   "------< Checker track files >------")


def has_config_parts(lines: list[str]) -> bool:
    """The dump has what keepalived's has from the configuration (not only the engine)."""
    return CONFIG_SECTIONS[0] in lines


@dataclass(frozen=True)
class BlockDifference:
    """In the health checker block headed ``header`` (`` [vs] -> [rs]``), keepalived
    writes the lines ``theirs`` where we write ``ours``; ``anchor``: its entry in
    docs/lb-differences.md."""

    anchor: str
    header: str
    theirs: tuple[str, ...]
    ours: tuple[str, ...]


def _block(lines: list[str], header: str) -> tuple[int, int]:
    """Where the checker block headed ``header`` starts and ends (one block only)."""
    starts = [i for i, line in enumerate(lines) if line == header]
    assert len(starts) == 1, f"{header!r}: {len(starts)} blocks"
    end = starts[0] + 1
    while end < len(lines) and not lines[end].startswith((" [", " FWM ", "------< ")):
        end += 1
    return starts[0], end


def without_block_lines(lines: list[str], header: str, wanted: tuple[str, ...]) -> list[str]:
    """``lines`` without the lines ``wanted`` of one checker block, each of which must be
    there: a listed difference that is no longer seen fails."""
    start, end = _block(lines, header)
    block = lines[start:end]
    for line in wanted:
        assert line in block, f"{header}: {line!r} not in {block}"
        block.remove(line)
    return lines[:start] + block + lines[end:]
