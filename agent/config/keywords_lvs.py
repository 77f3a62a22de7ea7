"""virtual_server_group, virtual_server, real_server, checkers, SSL and BFD."""

from __future__ import annotations

from .schema import Kw

LVS_ROOT_KEYWORDS: tuple[Kw, ...] = ()
