"""An IPv6 instance whose link has no carrier at start has no link-local source yet."""

from __future__ import annotations

from tests.integration.agents import Router, vrrp_config, wait_for


def test_ipv6_source_is_found_once_the_link_comes_up(lab_factory) -> None:
    lab = lab_factory(["r1"])
    r1 = lab.host("r1")
    # A link of our own inside r1, without carrier: no link-local address on it.
    r1.run(["ip", "link", "add", "x0", "type", "veth", "peer", "name", "x1"])
    r1.run(["sysctl", "-qw", "net.ipv6.conf.x0.accept_dad=0"])
    r1.run(["ip", "link", "set", "x0", "up"])
    assert "fe80" not in r1.run(["ip", "-6", "addr", "show", "dev", "x0"]).stdout
    router = Router(r1, vrrp_config("r1", priority=150, version=3, advert_int="0.1",
                                    interface="x0", vip="2001:db8:1::100/64")).start()
    try:
        router.wait_log("Entering FAULT STATE")
        r1.run(["ip", "link", "set", "x1", "up"])            # carrier: link-local appears
        wait_for("the VIP on x0", lambda: "2001:db8:1::100" in
                 r1.run(["ip", "-6", "addr", "show", "dev", "x0"]).stdout, timeout=10)
        wait_for("adverts from the link-local address",
                 lambda: "sending adverts from fe80::" in router.log_text(), timeout=5)
    finally:
        router.close()
