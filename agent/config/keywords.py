"""Every keyword of keepalived.conf, declared once.

The tables live beside this file by subsystem (``keywords_vrrp``: global
definitions, trackers, VRRP; ``keywords_lvs``: virtual servers, checkers, SSL,
BFD).  This module puts them together as the top level of a file.
"""

from __future__ import annotations

from .keywords_lvs import LVS_ROOT_KEYWORDS
from .keywords_vrrp import VRRP_ROOT_KEYWORDS
from .schema import BlockSpec

ROOT = BlockSpec("root", (*VRRP_ROOT_KEYWORDS, *LVS_ROOT_KEYWORDS))
