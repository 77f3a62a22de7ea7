"""The configuration model: a tree of blocks holding typed keyword values.

A :class:`Node` is one block (the whole file, a ``global_defs``, a
``vrrp_instance VI_1``...).  ``values`` maps a keyword's canonical name to its
value: a Python value from the keyword's type, a tuple of line values for a
line block, a Node for a block keyword, or a list of those when the keyword
repeats.  Positions are kept beside the values for diagnostics and do not take
part in equality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .diag import Where
from .schema import BlockSpec


@dataclass(eq=False)
class Node:
    spec: BlockSpec
    head: Any = None
    values: dict[str, Any] = field(default_factory=dict)
    where: Where | None = None
    value_where: dict[str, Where] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.spec.kind

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return (self.kind, self.head, self.values) == (other.kind, other.head, other.values)

    def __repr__(self) -> str:
        head = f" {self.head!r}" if self.head is not None else ""
        return f"<{self.kind}{head} {self.values!r}>"

    def get(self, name: str, default: Any = None) -> Any:
        """The value of a keyword, or keepalived's default when it is not set."""
        if name in self.values:
            return self.values[name]
        kw = self.spec.keyword(name)
        return kw.default if default is None else default

    def blocks(self, name: str) -> list[Node]:
        """The blocks of a (repeating or single) block keyword, as a list."""
        value = self.values.get(name)
        if value is None:
            return []
        return value if isinstance(value, list) else [value]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.head is not None:
            out["head"] = _json(self.head)
        out["values"] = {k: _json(v) for k, v in self.values.items()}
        return out


def _json(value: Any) -> Any:
    if isinstance(value, Node):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return value
