"""The kinds of child process the agent runs, in the order it starts them.

Each subsystem declares its child (``core/children.py``); a new one is listed
here and nowhere else.
"""

from __future__ import annotations

from .bfd.child import BFD
from .check.child import CHECKER
from .core.children import ChildKind
from .vrrp.child import VRRP

KINDS: tuple[ChildKind, ...] = (VRRP, CHECKER, BFD)
