"""The example configurations in agent/examples/ (users read them; ``./lab demo`` runs
lb-pair.conf): each is clean as node-a and as node-b read it, as ``keepalived-py -t``
checks it, on hosts that have its eth0."""

from __future__ import annotations

from pathlib import Path

import pytest
from keepalived_py.config import load

from tests import demo
from tests.conftest import REPO

EXAMPLES = sorted((REPO / "agent" / "examples").glob("*.conf"))


@pytest.mark.parametrize("config_id", ["node-a", "node-b"])
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_is_clean(path: Path, config_id: str) -> None:
    result = load(str(path), config_id=config_id, interfaces={"eth0"})
    assert result.diags.exit_code() == 0, [str(d) for d in result.diags]
    assert not result.not_acted, result.not_acted


def test_the_demo_config_lists_the_demo_lab_real_servers() -> None:
    text = demo.CONF.read_text()
    # tests/lab.py numbers a lab's hosts 198.18.0.11, .12 ... in the order given
    for web in demo.WEBS:
        assert f"real_server 198.18.0.{11 + demo.HOSTS.index(web)} {demo.PORT} " in text
    assert f"$VIP={demo.VIP}\n" in text and "lb_kind DR" in text
