"""Accept mode: with no_accept a master holds the VIP but drops traffic for it (RFC 5798)."""

from __future__ import annotations

import shutil
import signal

import pytest

from tests.conftest import tier_missing
from tests.integration.agents import Router, serve, vrrp_config, wait_for, who_answers

VIP = "198.18.0.100"


@pytest.fixture
def nft() -> None:
    if shutil.which("nft") is None:
        tier_missing("accept-mode tier: nft (Debian package nftables) not installed")


@pytest.mark.parametrize("mode", ["accept", "no_accept"])
def test_master_answers_on_its_vip_only_in_accept_mode(lab_factory, nft, mode: str) -> None:
    lab = lab_factory(["r1", "c"])
    r1, client = lab.host("r1"), lab.host("c")
    router = Router(r1, vrrp_config("r1", priority=150, version=3, advert_int="0.1",
                                    extra=mode)).start()
    try:
        serve(r1)
        wait_for("r1 to hold the VIP", lambda: router.has(VIP))
        answer = who_answers(client, VIP, timeout=1.0)
        # The VIP still resolves to the master either way: neighbour discovery is let through.
        assert client.neighbour_mac(VIP) == r1.mac
        if mode == "accept":
            assert answer == "r1"
        else:
            assert answer is None
            assert "keepalived_py" in r1.run(["nft", "list", "tables"]).stdout
        router.stop(signal.SIGTERM)
        assert not router.has(VIP)
        assert "keepalived_py" not in r1.run(["nft", "list", "tables"]).stdout
    finally:
        router.close()
