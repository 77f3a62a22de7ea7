"""global_defs, top-level options, trackers, sync groups and VRRP instances."""

from __future__ import annotations

from .schema import BlockSpec, Decimal, Int, Kw, OptBool, Str, Words

GLOBAL_DEFS = BlockSpec("global_defs", (
    Kw("router_id", Str()),
    Kw("script_user", Words(1, 2)),
    Kw("enable_script_security"),
    Kw("vrrp_version", Int(2, 3), default=2),
))

VRRP_INSTANCE = BlockSpec("vrrp_instance", (
    Kw("state", Str()),
    Kw("interface", Str()),
    Kw("virtual_router_id", Int(1, 255)),
    Kw("priority", Int(1, 255), default=100),
    Kw("advert_int", Decimal(0, 255, 6), default=1.0),
    Kw("nopreempt"),
    Kw("virtual_ipaddress", lines=Words(1)),
    Kw("smtp_alert", OptBool()),
), head=Str())

VRRP_ROOT_KEYWORDS = (
    Kw("global_defs", block=GLOBAL_DEFS),
    Kw("vrrp_instance", block=VRRP_INSTANCE, repeat=True),
)
