"""The real-server state machine and quorum (agent/check/engine.py) on a simulated clock.

Configurations are real keepalived.conf text through the parser; probes are answered
by a table of which real servers are healthy, at the simulated time the engine asks.
Expected figures are keepalived 2.2.7's (check_tcp.c, check_http.c, check_misc.c,
ipwrapper.c), worked out by hand in each test.
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from keepalived_py.check import engine as E
from keepalived_py.check.spec import WEIGHT_FAULT, Forwarding, RealServerSpec, build
from keepalived_py.config import load

VIP = "198.18.1.10"


def specs(text: str) -> list:
    result = load("t.conf", text=textwrap.dedent(text), interfaces={"eth0"})
    return build(result.root).servers


@dataclass
class Sim:
    """A pool driven on simulated time; ``health`` answers the probes."""

    text: str
    health: dict[str, bool] = field(default_factory=dict)        # rs ip -> probe ok
    weights: dict[str, int | None] = field(default_factory=dict)  # MISC dynamic weight
    files: dict[str, int] = field(default_factory=dict)
    now: float = 0.0
    log: list[tuple[float, str]] = field(default_factory=list)
    probes: list[tuple[float, str, int]] = field(default_factory=list)
    latency: float = 0.0
    options: dict = field(default_factory=dict)
    answer: Callable[[E.RunProbe], bool] | None = None

    def __post_init__(self) -> None:
        self.pool = E.Pool(specs(self.text), rng=random.Random(1), **self.options)
        self.record(self.pool.start(self.now, file_values=self.files))

    def record(self, actions: list) -> None:
        for a in actions:
            if isinstance(a, E.RsNotify | E.VsNotify):
                self.log.append((round(self.now, 6), a.fifo_line))

    def lines(self) -> list[str]:
        return [line for _, line in self.log]

    def run_until(self, end: float) -> None:
        pending: list[tuple[float, E.RunProbe]] = []
        while True:
            deadline = self.pool.next_deadline()
            times = [t for t in [deadline, *(t for t, _ in pending)] if t is not None]
            if not times or min(times) > end:
                self.now = end
                return
            self.now = min(times)
            for t, probe in [p for p in pending if p[0] <= self.now]:
                pending.remove((t, probe))
                ok = self.answer(probe) if self.answer else self.health.get(probe.ref[1][0],
                                                                             True)
                weight = self.weights.get(probe.ref[1][0]) if ok else None
                self.record(self.pool.result(probe.ref, ok, self.now, weight=weight))
            for probe in self.pool.due(self.now):
                self.probes.append((round(self.now, 6), probe.ref[1][0], probe.url))
                pending.append((self.now + self.latency, probe))

    def table(self, vip: str = VIP, port: int = 80) -> dict[str, int]:
        vs = next(v for v in self.pool.servers.values() if v.spec.ip == vip
                  and v.spec.port == port)
        return {ip: w for (ip, _), w in vs.table.items()}

    def vs(self) -> E.VirtualServer:
        return next(iter(self.pool.servers.values()))


def conf(real_servers: str, vs_extra: str = "", glob: str = "") -> str:
    return f"""
    global_defs {{
    {glob}
    }}
    virtual_server {VIP} 80 {{
        delay_loop 10
        lb_algo rr
        lb_kind NAT
        protocol TCP
        warmup 0
        {vs_extra}
    {real_servers}
    }}
    """


def tcp_rs(ip: str, extra: str = "", check: str = "") -> str:
    return f"""
        real_server {ip} 8080 {{
            weight 1
            {extra}
            TCP_CHECK {{
                connect_timeout 2
                {check}
            }}
        }}"""


# -- resolution ------------------------------------------------------------------------

def test_timing_is_inherited_checker_then_real_server_then_virtual_server() -> None:
    [vs] = specs(conf(
        tcp_rs("198.18.2.11", extra="retry 4\ndelay_before_retry 7", check="delay_loop 3")
        + tcp_rs("198.18.2.12", check="retry 2")
        + """
        real_server 198.18.2.13 8080 {
            HTTP_GET { url { path / } }
            MISC_CHECK { misc_path /bin/true }
        }""", vs_extra="connect_timeout 9"))
    a, b, c = vs.reals
    [ta], [tb] = a.checkers, b.checkers
    http, misc = c.checkers
    assert (ta.retry, ta.delay_before_retry, ta.delay_loop, ta.warmup, ta.connect_timeout) == \
        (4, 7.0, 3.0, 0.0, 2.0)
    assert (tb.retry, tb.delay_before_retry, tb.delay_loop) == (2, 1.0, 10.0)
    # each checker's own defaults when nothing above sets them
    assert (http.retry, http.delay_before_retry, http.connect_timeout) == (1, 3.0, 9.0)
    assert (misc.retry, misc.delay_before_retry) == (0, 1.0)
    assert c.port == 8080 and c.forwarding.method == "NAT"


def test_dr_real_server_takes_the_service_port_and_quorum_is_clamped() -> None:
    [vs] = specs(f"""
    virtual_server {VIP} 80 {{
        lb_kind DR
        protocol TCP
        quorum 9
        hysteresis 9
        real_server 198.18.2.11 8080 {{ weight 3 }}
        real_server 198.18.2.12 {{ weight 2 }}
    }}""")
    assert [(r.port, r.forwarding.method) for r in vs.reals] == [(80, "DR"), (80, "DR")]
    assert (vs.quorum, vs.hysteresis) == (5, 4)
    assert vs.name == f"[{VIP}]:tcp:80"


# -- checker up and down ----------------------------------------------------------------

def test_non_alpha_servers_are_in_the_pool_before_any_check() -> None:
    sim = Sim(conf(tcp_rs("198.18.2.11") + tcp_rs("198.18.2.12")))
    assert sim.table() == {"198.18.2.11": 1, "198.18.2.12": 1}
    assert sim.lines() == [f"VS [{VIP}]:tcp:80 UP"]     # quorum gained at start


def test_first_failure_marks_down_then_retry_plus_one_failures_after_a_success() -> None:
    sim = Sim(conf(tcp_rs("198.18.2.11", check="retry 2\ndelay_before_retry 1")
                   + tcp_rs("198.18.2.12")))
    sim.health["198.18.2.11"] = False
    sim.run_until(1.0)                  # first check at BOOTSTRAP_DELAY (warmup 0)
    assert sim.table() == {"198.18.2.12": 1}
    assert sim.log[-1] == (1.0, f"RS [198.18.2.11]:tcp:8080 [{VIP}]:tcp:80 DOWN")
    sim.health["198.18.2.11"] = True
    sim.run_until(11.0)                 # down: next try after delay_loop (10 s)
    assert sim.table() == {"198.18.2.11": 1, "198.18.2.12": 1}
    sim.health["198.18.2.11"] = False
    # failures at 21, 22, 23 (retry 2 -> 3 in a row, delay_before_retry apart)
    sim.run_until(22.5)
    assert "198.18.2.11" in sim.table()
    sim.run_until(23.0)
    assert "198.18.2.11" not in sim.table()
    assert [t for t, ip, _ in sim.probes if ip == "198.18.2.11"] == [1, 11, 21, 22, 23]


def test_a_real_server_is_up_only_when_all_its_checkers_are() -> None:
    rs = """
        real_server 198.18.2.11 8080 {
            TCP_CHECK {
                connect_port 8080
                retry 0
            }
            TCP_CHECK {
                connect_port 9090
                retry 0
            }
        }""" + tcp_rs("198.18.2.12")
    failing = {8080: False, 9090: False}

    def answer(probe: E.RunProbe) -> bool:
        if probe.ref[1][0] != "198.18.2.11":
            return True
        return not failing[probe.spec.option("connect_port")]

    sim = Sim(conf(rs), answer=answer)
    failing[9090] = True
    sim.run_until(1.0)
    assert "198.18.2.11" not in sim.table()
    failing[9090] = False
    failing[8080] = True
    sim.run_until(11.0)                 # one recovers, the other fails: still out
    assert "198.18.2.11" not in sim.table()
    assert sim.lines().count(f"RS [198.18.2.11]:tcp:8080 [{VIP}]:tcp:80 DOWN") == 1
    failing[8080] = False
    sim.run_until(21.0)
    assert sim.table()["198.18.2.11"] == 1
    assert sim.lines()[-1] == f"RS [198.18.2.11]:tcp:8080 [{VIP}]:tcp:80 UP"


def test_alpha_server_enters_the_pool_only_after_passing() -> None:
    sim = Sim(conf(tcp_rs("198.18.2.11", extra="alpha") + tcp_rs("198.18.2.12")))
    assert sim.table() == {"198.18.2.12": 1}
    sim.run_until(1.0)
    assert sim.table() == {"198.18.2.11": 1, "198.18.2.12": 1}


def test_alpha_first_failure_notifies_down() -> None:
    sim = Sim(conf(tcp_rs("198.18.2.11", extra="alpha") + tcp_rs("198.18.2.12")))
    sim.health["198.18.2.11"] = False
    sim.run_until(1.0)
    assert sim.lines()[-1] == f"RS [198.18.2.11]:tcp:8080 [{VIP}]:tcp:80 DOWN"
    assert "198.18.2.11" not in sim.table()


def test_inhibit_on_failure_sets_weight_zero_instead_of_removing() -> None:
    sim = Sim(conf(tcp_rs("198.18.2.11", extra="weight 5\ninhibit_on_failure")
                   + tcp_rs("198.18.2.12")))
    sim.health["198.18.2.11"] = False
    sim.run_until(1.0)
    assert sim.table() == {"198.18.2.11": 0, "198.18.2.12": 1}
    sim.health["198.18.2.11"] = True
    sim.run_until(11.0)
    assert sim.table() == {"198.18.2.11": 5, "198.18.2.12": 1}


def test_inhibited_alpha_server_is_pre_added_at_weight_zero() -> None:
    sim = Sim(conf(tcp_rs("198.18.2.11", extra="alpha\ninhibit_on_failure")
                   + tcp_rs("198.18.2.12")))
    assert sim.table() == {"198.18.2.11": 0, "198.18.2.12": 1}


# -- quorum and sorry server ------------------------------------------------------------

def test_quorum_with_hysteresis_swaps_the_sorry_server() -> None:
    servers = "".join(tcp_rs(f"198.18.2.{i}", check="retry 0") for i in (11, 12, 13))
    sim = Sim(conf(servers, vs_extra="quorum 2\nhysteresis 1\n"
                                     "sorry_server 198.18.3.1 8080"))
    assert sim.lines() == [f"VS [{VIP}]:tcp:80 UP"]   # 3 >= 2 + 1
    sim.health["198.18.2.11"] = False
    sim.run_until(1.0)                  # 2 left: 2 >= quorum - hysteresis = 1: still up
    assert sim.vs().quorum_up
    sim.health["198.18.2.12"] = False
    sim.health["198.18.2.13"] = False
    sim.run_until(11.0)
    assert not sim.vs().quorum_up
    assert sim.table() == {"198.18.3.1": 1}
    assert sim.lines()[-1] == f"VS [{VIP}]:tcp:80 DOWN"
    sim.health["198.18.2.12"] = True
    sim.run_until(21.0)                 # 1 alive: 1 < quorum + hysteresis = 3: still down
    assert not sim.vs().quorum_up and sim.table() == {"198.18.3.1": 1}
    assert sim.lines()[-1] == f"RS [198.18.2.12]:tcp:8080 [{VIP}]:tcp:80 UP"
    sim.health["198.18.2.13"] = True
    sim.health["198.18.2.11"] = True
    sim.run_until(31.0)
    assert sim.vs().quorum_up
    assert sim.table() == {"198.18.2.11": 1, "198.18.2.12": 1, "198.18.2.13": 1}
    assert sim.lines()[-1] == f"VS [{VIP}]:tcp:80 UP"


def test_sorry_server_inhibit_is_pre_added_at_weight_zero() -> None:
    sim = Sim(conf(tcp_rs("198.18.2.11"),
                   vs_extra="sorry_server 198.18.3.1 8080\nsorry_server_inhibit"))
    assert sim.table() == {"198.18.2.11": 1, "198.18.3.1": 0}
    sim.health["198.18.2.11"] = False
    sim.run_until(1.0)
    assert sim.table() == {"198.18.3.1": 1}
    sim.health["198.18.2.11"] = True
    sim.run_until(11.0)
    assert sim.table() == {"198.18.2.11": 1, "198.18.3.1": 0}


def test_starting_below_quorum_puts_the_sorry_server_in() -> None:
    sim = Sim(conf(tcp_rs("198.18.2.11", extra="alpha"),
                   vs_extra="sorry_server 198.18.3.1 8080"))
    assert sim.table() == {"198.18.3.1": 1}
    assert sim.lines() == [f"VS [{VIP}]:tcp:80 DOWN"]
    sim.run_until(1.0)
    assert sim.table() == {"198.18.2.11": 1}


def test_a_down_tcp_check_is_tried_every_delay_loop() -> None:
    # 2.2.7 counted retries again while down: 10 s, 2 s, 10 s, 2 s ... (keepalived
    # fixed it in 77dad708); the VM tier sees keepalived 2.2.7 still doing so
    sim = Sim(conf(tcp_rs("198.18.2.11", check="retry 1\ndelay_before_retry 2")))
    sim.run_until(1.0)
    sim.health["198.18.2.11"] = False
    sim.run_until(60.0)
    # up: fails at 11, retried at 13 (down); then every delay_loop
    assert [t for t, _, _ in sim.probes] == [1.0, 11.0, 13.0, 23.0, 33.0, 43.0, 53.0]
    assert "198.18.2.11" not in sim.table()
    sim.health["198.18.2.11"] = True    # one success brings it back
    sim.run_until(63.0)
    assert sim.table() == {"198.18.2.11": 1}


# -- dynamic weights --------------------------------------------------------------------

MISC = """
        real_server 198.18.2.11 8080 {
            weight 10
            MISC_CHECK {
                misc_path "/bin/true"
                misc_dynamic
                retry 1
                delay_before_retry 2
            }
        }"""


def test_misc_dynamic_weight_replaces_the_configured_weight_and_failure_takes_it_back() -> None:
    sim = Sim(conf(MISC + tcp_rs("198.18.2.12")))
    sim.weights["198.18.2.11"] = 5      # exit 7
    sim.run_until(1.0)
    assert sim.table()["198.18.2.11"] == 5
    sim.health["198.18.2.11"] = False   # retry 1: down on the second failure, 2 s later
    sim.run_until(11.0)
    assert sim.table()["198.18.2.11"] == 5
    sim.run_until(13.0)
    assert "198.18.2.11" not in sim.table()
    assert sim.pool.servers[sim.vs().key].reals[("198.18.2.11", 8080)].effective_weight == 10
    sim.health["198.18.2.11"] = True    # the same exit status as before the failure
    sim.run_until(23.0)
    assert sim.table()["198.18.2.11"] == 5


def test_misc_results_are_logged_as_keepalived_logs_them() -> None:
    # the VM showed keepalived's MISC timeouts in its log and ours in nothing
    pool = E.Pool(specs(conf(MISC)), rng=random.Random(1))
    pool.start(0.0)

    def run(now: float, ok: bool, error: str = "") -> list[str]:
        [probe] = pool.due(now)
        return [a.text for a in pool.result(probe.ref, ok, now, error=error)
                if isinstance(a, E.Log) and a.text.startswith("Misc")]
    what = f"Misc check for [[198.18.2.11]:tcp:8080 VS [{VIP}]:tcp:80] by [/bin/true]"
    assert run(1.0, True) == [f"{what} succeeded."]
    assert run(11.0, False, "timeout after 2 s") == []        # retry 1: one more try
    assert run(13.0, False, "timeout after 2 s") == \
        [f"{what} failed after 1 retries (timeout after 2 s)."]
    assert run(23.0, False, "exited with status 1") == []     # already down: quiet
    assert run(33.0, True) == [f"{what} succeeded."]


def test_misc_schedule_is_start_to_start() -> None:
    sim = Sim(conf(MISC), latency=3.0)
    sim.run_until(30.0)
    assert [t for t, _, _ in sim.probes] == [1.0, 11.0, 21.0]


@pytest.mark.parametrize(("weight", "values", "expected"), [
    ("weight 2", [0, 3, -1], [1, 7, 0]),
    ("weight 2 reverse", [0, 3, -1], [1, 0, 3]),
    ("weight 0", [0, 5, 0], [1, None, 1]),
    ("weight 0 reverse", [1, 0, 1], [1, None, 1]),
])
def test_file_check_weights(weight: str, values: list[int], expected: list) -> None:
    text = conf(f"""
        real_server 198.18.2.11 8080 {{
            FILE_CHECK {{
                track_file state
                {weight}
            }}
        }}""" + tcp_rs("198.18.2.12"), glob="") + """
    track_file state {
        file /tmp/state
    }"""
    sim = Sim(text, files={"state": values[0]})
    seen = [sim.table().get("198.18.2.11")]
    for value in values[1:]:
        sim.pool.file_changed("state", value, sim.now)
        seen.append(sim.table().get("198.18.2.11"))
    assert seen == expected


def test_file_check_fault_at_the_weight_limit() -> None:
    from keepalived_py.check.engine import file_status
    [vs] = specs(conf("""
        real_server 198.18.2.11 8080 {
            FILE_CHECK {
                track_file state
                weight 254
            }
        }""") + "track_file state {\n file /tmp/s\n}")
    [spec] = vs.reals[0].checkers
    assert file_status(spec, -(2**31 // 254)) > WEIGHT_FAULT
    assert file_status(spec, -(2**31 // 254) - 1) == WEIGHT_FAULT


# -- HTTP: one URL per run ---------------------------------------------------------------

HTTP = """
        real_server 198.18.2.11 8080 {
            HTTP_GET {
                url { path /a }
                url { path /b }
                url { path /c }
                retry 1
                delay_before_retry 3
            }
        }"""


def test_http_checks_one_url_per_delay_loop_and_retries_the_failed_one_alone() -> None:
    bad: set[int] = set()
    sim = Sim(conf(HTTP + tcp_rs("198.18.2.12")),
              answer=lambda p: p.ref[1][0] != "198.18.2.11" or p.url not in bad)
    sim.run_until(31.0)
    http = [(t, url) for t, ip, url in sim.probes if ip == "198.18.2.11"]
    assert http == [(1.0, 0), (11.0, 1), (21.0, 2), (31.0, 0)]
    bad.add(1)
    sim.run_until(60.0)
    http = [(t, url) for t, ip, url in sim.probes if ip == "198.18.2.11"][4:]
    # /b fails at 41, retried 3 s later (retry 1), fails: down; then /b alone every
    # max(delay_before_retry, delay_loop)
    assert http == [(41.0, 1), (44.0, 1), (54.0, 1)]
    assert "198.18.2.11" not in sim.table()
    bad.clear()
    sim.run_until(94.0)
    http = [(t, url) for t, ip, url in sim.probes if ip == "198.18.2.11"][7:]
    # /b passes at 64: all URLs again from /a; up once /c passes
    assert http == [(64.0, 1), (74.0, 0), (84.0, 1), (94.0, 2)]
    assert sim.table()["198.18.2.11"] == 1


def test_fast_recovery_checks_again_at_once_while_not_known_failed() -> None:
    sim = Sim(conf(HTTP.replace("retry 1", "retry 1\nfast_recovery")))
    sim.run_until(1.0)
    assert [(t, url) for t, _, url in sim.probes] == [(1.0, 0), (1.0, 1), (1.0, 2)]


# -- ha_suspend ---------------------------------------------------------------------------

def test_ha_suspend_pauses_checks_while_the_vip_is_elsewhere() -> None:
    pool = E.Pool(specs(conf(tcp_rs("198.18.2.11"), vs_extra="ha_suspend")),
                  rng=random.Random(1))
    pool.start(0.0, local_addresses=set())
    assert pool.due(1.0) == []
    pool.address_changed(VIP, True)
    assert pool.due(11.0)[0].ref[1] == ("198.18.2.11", 8080)


# -- reload -------------------------------------------------------------------------------

def reload(sim: Sim, text: str) -> E.ReloadReport:
    report = sim.pool.reload(specs(text), sim.now, file_values=sim.files)
    sim.record(report.actions)
    return report


def test_reload_keeps_unchanged_checker_state_and_timer() -> None:
    text = conf(tcp_rs("198.18.2.11") + tcp_rs("198.18.2.12", check="retry 3"))
    sim = Sim(text)
    sim.health["198.18.2.12"] = False
    sim.run_until(5.0)
    report = reload(sim, text)
    assert report.unchanged == [f"[{VIP}]:tcp:80"]
    assert sim.table() == {"198.18.2.11": 1}        # the failed one stays out
    sim.run_until(10.5)
    assert [t for t, _, _ in sim.probes] == [1.0, 1.0]   # no new warm-up, no extra check
    sim.run_until(11.0)
    assert sorted(t for t, _, _ in sim.probes) == [1.0, 1.0, 11.0, 11.0]


def test_reload_restarts_a_changed_checker() -> None:
    sim = Sim(conf(tcp_rs("198.18.2.11") + tcp_rs("198.18.2.12")))
    sim.run_until(5.0)
    reload(sim, conf(tcp_rs("198.18.2.11", check="connect_port 9") + tcp_rs("198.18.2.12")))
    sim.run_until(6.0)                  # the changed one runs again after BOOTSTRAP_DELAY
    assert [(t, ip) for t, ip, _ in sim.probes][2:] == [(6.0, "198.18.2.11")]
    assert sim.table() == {"198.18.2.11": 1, "198.18.2.12": 1}


def test_reload_drains_a_removed_real_server() -> None:
    sim = Sim(conf(tcp_rs("198.18.2.11") + tcp_rs("198.18.2.12")), options={"drain_time": 30})
    sim.run_until(2.0)
    reload(sim, conf(tcp_rs("198.18.2.11")))
    assert sim.table() == {"198.18.2.11": 1, "198.18.2.12": 0}
    assert sim.lines()[-1] == f"RS [198.18.2.12]:tcp:8080 [{VIP}]:tcp:80 DOWN"
    key = (sim.vs().key, ("198.18.2.12", 8080))
    sim.pool.drained(3.0, {key: 4})
    assert sim.table()["198.18.2.12"] == 0       # still connections
    sim.pool.drained(4.0, {key: 0})
    assert sim.table() == {"198.18.2.11": 1}


def test_reload_drain_ends_at_the_drain_time() -> None:
    sim = Sim(conf(tcp_rs("198.18.2.11") + tcp_rs("198.18.2.12")), options={"drain_time": 30})
    reload(sim, conf(tcp_rs("198.18.2.11")))
    key = (sim.vs().key, ("198.18.2.12", 8080))
    assert sim.pool.next_drain_deadline() == 30.0
    sim.pool.drained(30.0, {key: 4})
    assert sim.table() == {"198.18.2.11": 1}


def test_reload_with_drain_time_0_deletes_a_removed_server_at_once() -> None:
    sim = Sim(conf(tcp_rs("198.18.2.11") + tcp_rs("198.18.2.12")), options={"drain_time": 0})
    sim.run_until(2.0)
    reload(sim, conf(tcp_rs("198.18.2.11")))
    assert sim.table() == {"198.18.2.11": 1}
    assert sim.pool.next_drain_deadline() is None


def test_reload_applies_a_changed_weight_and_adds_a_new_server() -> None:
    sim = Sim(conf(tcp_rs("198.18.2.11")))
    reload(sim, conf(tcp_rs("198.18.2.11", extra="weight 4") + tcp_rs("198.18.2.12")))
    assert sim.table() == {"198.18.2.11": 4, "198.18.2.12": 1}


def test_reload_says_which_notifications_are_for_what_it_removed() -> None:
    # keepalived runs the notify_down of a removed server as the previous configuration
    # gave it (the new one has none for it): the runtime needs to know which those are
    sim = Sim(conf(tcp_rs("198.18.2.11") + tcp_rs("198.18.2.12")))
    sim.health["198.18.2.11"] = False
    sim.run_until(1.0)
    sim.health["198.18.2.11"] = True
    other = conf(tcp_rs("198.18.2.13")).replace(" 80 {", " 81 {")
    report = reload(sim, conf(tcp_rs("198.18.2.11")) + other)
    notes = [(type(a).__name__, a.fifo_line, a.removed) for a in report.actions
             if isinstance(a, E.RsNotify | E.VsNotify)]
    assert ("RsNotify", f"RS [198.18.2.12]:tcp:8080 [{VIP}]:tcp:80 DOWN", True) in notes
    assert all(not removed for _, line, removed in notes if "198.18.2.12" not in line)
    # a virtual server removed: its real servers, then itself
    sim.run_until(12.0)                 # .11 passes its next check: :80 is up again
    assert sim.table() == {"198.18.2.11": 1, "198.18.2.12": 0}     # .12 drains
    report = reload(sim, other)
    notes = [(a.fifo_line, a.removed) for a in report.actions
             if isinstance(a, E.RsNotify | E.VsNotify)]
    assert notes == [(f"RS [198.18.2.11]:tcp:8080 [{VIP}]:tcp:80 DOWN", True),
                     (f"VS [{VIP}]:tcp:80 DOWN", True)]


def test_reload_removes_a_virtual_server() -> None:
    sim = Sim(conf(tcp_rs("198.18.2.11")))
    report = reload(sim, conf(tcp_rs("198.18.2.11")).replace(" 80 {", " 81 {"))
    assert report.removed == [f"[{VIP}]:tcp:80"] and report.added == [f"[{VIP}]:tcp:81"]
    assert list(sim.pool.wanted()) == [("address", "tcp", VIP, 81)]


# -- shutdown -----------------------------------------------------------------------------

def test_stop_empties_the_table_and_notifies_only_with_omega() -> None:
    for omega, expected in ((False, []),
                            (True, [f"RS [198.18.2.11]:tcp:8080 [{VIP}]:tcp:80 DOWN",
                                    f"VS [{VIP}]:tcp:80 DOWN"])):
        sim = Sim(conf(tcp_rs("198.18.2.11"), vs_extra="omega" if omega else ""))
        before = len(sim.log)
        sim.record(sim.pool.stop())
        assert sim.lines()[before:] == expected
        assert sim.pool.wanted() == {}


def test_a_restart_adopts_alpha_servers_the_kernel_has() -> None:
    text = conf(tcp_rs("198.18.2.11", extra="alpha") + tcp_rs("198.18.2.12", extra="alpha"))
    pool = E.Pool(specs(text), rng=random.Random(1))
    key = next(iter(pool.servers))
    pool.start(0.0, adopt={(key, ("198.18.2.11", 8080))})
    vs = pool.servers[key]
    assert {k[0]: w for k, w in vs.table.items()} == {"198.18.2.11": 1}


def stray(ip: str, port: int = 8080, weight: int = 3, method: str = "NAT"
          ) -> RealServerSpec:
    """A destination as the data plane reads it from the kernel (ipvs_plane.stray_spec)."""
    return RealServerSpec(ip=ip, port=port, weight=weight, forwarding=Forwarding(method),
                          inhibit=False, alpha=False, uthreshold=100, lthreshold=10,
                          smtp_alert=False)


def restarted(text: str, found: dict[str, RealServerSpec], now: float = 100.0,
              drain_time: float = 30.0) -> tuple[E.Pool, E.VsKey, list[E.Action]]:
    """A checker process starting at ``now`` over a kernel table holding the configured
    servers and ``found`` (by address) under the configuration's only virtual server."""
    pool = E.Pool(specs(text), rng=random.Random(1), drain_time=drain_time)
    [key] = pool.servers
    adopt = E.InKernel({(key, rs) for rs in pool.servers[key].reals},
                       {(key, spec.key): spec for spec in found.values()})
    return pool, key, pool.start(now, adopt=adopt)


def weights(pool: E.Pool) -> dict[str, int]:
    [(_, dests)] = pool.wanted().values()
    return {rs[0]: weight for rs, (_, weight) in dests.items()}


def test_a_restart_drains_a_server_the_kernel_has_and_the_configuration_not() -> None:
    text = conf(tcp_rs("198.18.2.11", extra="smtp_alert"), vs_extra="omega")
    pool, key, actions = restarted(text, {"198.18.2.12": stray("198.18.2.12")})
    # at weight 0 from the start, as the kernel holds it otherwise (method, thresholds)
    assert weights(pool) == {"198.18.2.11": 1, "198.18.2.12": 0}
    [(_, dests)] = pool.wanted().values()
    spec, _ = dests[("198.18.2.12", 8080)]
    assert (spec.forwarding.method, spec.uthreshold, spec.lthreshold) == ("NAT", 100, 10)
    logs = [a.text for a in actions if isinstance(a, E.Log)]
    assert logs[:2] == ["service [198.18.2.12]:tcp:8080 no longer exist",
                        f"Draining service [198.18.2.12]:tcp:8080 from VS [{VIP}]:tcp:80"]
    # it was never up in this process and has no script: nothing said about it
    assert not [a for a in actions if isinstance(a, E.RsNotify | E.RsMail)
                and a.rs.ip == "198.18.2.12"]
    assert pool.next_drain_deadline() == 130.0
    stray_key = (key, ("198.18.2.12", 8080))
    assert pool.drained(102.0, {stray_key: 2}) == []
    assert weights(pool) == {"198.18.2.11": 1, "198.18.2.12": 0}
    actions = pool.drained(104.0, {stray_key: 0})
    assert [a.text for a in actions if isinstance(a, E.Log)] == \
        [f"Removing service [198.18.2.12]:tcp:8080 from VS [{VIP}]:tcp:80 (drained)"]
    assert E.TableChanged(key) in actions
    assert weights(pool) == {"198.18.2.11": 1}
    assert pool.next_drain_deadline() is None


def test_a_restart_with_drain_time_0_deletes_a_stray_at_once() -> None:
    pool, _, actions = restarted(conf(tcp_rs("198.18.2.11")),
                                 {"198.18.2.12": stray("198.18.2.12")}, drain_time=0)
    assert weights(pool) == {"198.18.2.11": 1}
    assert f"Removing service [198.18.2.12]:tcp:8080 from VS [{VIP}]:tcp:80" in \
        [a.text for a in actions if isinstance(a, E.Log)]
    assert pool.next_drain_deadline() is None


def test_a_restart_drain_ends_at_the_drain_time() -> None:
    pool, key, _ = restarted(conf(tcp_rs("198.18.2.11")),
                             {"198.18.2.12": stray("198.18.2.12", method="DR", port=80)})
    stray_key = (key, ("198.18.2.12", 80))
    pool.drained(129.9, {stray_key: 4})
    assert weights(pool) == {"198.18.2.11": 1, "198.18.2.12": 0}
    actions = pool.drained(130.0, {stray_key: 4})
    assert [a.text for a in actions if isinstance(a, E.Log)] == \
        [f"Removing service [198.18.2.12]:tcp:80 from VS [{VIP}]:tcp:80 "
         "(drain time over, 4 connections cut)"]
    assert weights(pool) == {"198.18.2.11": 1}


def test_a_restart_adopts_servers_and_drains_the_strays_under_each_service() -> None:
    # the configured servers and sorry server are never strays, whatever the data plane
    # says; a server of one service found under another is drained there
    text = conf(tcp_rs("198.18.2.11"), vs_extra="sorry_server 198.18.2.20 8080") + f"""
    virtual_server {VIP} 81 {{
        lb_kind NAT
        protocol TCP
        {tcp_rs("198.18.2.12")}
    }}"""
    pool = E.Pool(specs(text), drain_time=30.0)
    vs80, vs81 = pool.servers
    found = E.InKernel({(vs80, ("198.18.2.11", 8080))},
                       {(vs80, ("198.18.2.11", 8080)): stray("198.18.2.11"),
                        (vs80, ("198.18.2.20", 8080)): stray("198.18.2.20"),
                        (vs81, ("198.18.2.11", 8080)): stray("198.18.2.11")})
    pool.start(0.0, adopt=found)
    table = {key[3]: {rs[0]: w for rs, (_, w) in dests.items()}
             for key, (_, dests) in pool.wanted().items()}
    assert table == {80: {"198.18.2.11": 1}, 81: {"198.18.2.12": 1, "198.18.2.11": 0}}
    assert list(pool.servers[vs81].draining) == [("198.18.2.11", 8080)]


def test_a_reload_that_brings_a_draining_stray_back_stops_its_drain() -> None:
    pool, key, _ = restarted(conf(tcp_rs("198.18.2.11")), {"198.18.2.12": stray("198.18.2.12")})
    report = pool.reload(specs(conf(tcp_rs("198.18.2.11") + tcp_rs("198.18.2.12"))), 101.0)
    assert not [a for a in report.actions if isinstance(a, E.RsNotify)
                and a.rs.ip == "198.18.2.12" and not a.up]
    assert weights(pool) == {"198.18.2.11": 1, "198.18.2.12": 1}
    assert pool.next_drain_deadline() is None
    # and one that keeps it out keeps it draining, its deadline as it was
    pool, key, _ = restarted(conf(tcp_rs("198.18.2.11")), {"198.18.2.12": stray("198.18.2.12")})
    pool.reload(specs(conf(tcp_rs("198.18.2.11", extra="weight 2"))), 110.0)
    assert weights(pool) == {"198.18.2.11": 2, "198.18.2.12": 0}
    assert pool.next_drain_deadline() == 130.0


def test_due_starts_at_most_limit_probes_and_keeps_the_rest_due() -> None:
    servers = "".join(tcp_rs(f"198.18.2.{i}") for i in range(11, 16))
    pool = E.Pool(specs(conf(servers)), rng=random.Random(1))
    pool.start(0.0)
    first = pool.due(1.0, limit=2)
    assert len(first) == 2 and pool.next_deadline() == 1.0
    rest = pool.due(1.0, limit=10)
    assert len(rest) == 3
    assert {p.ref[1] for p in first} | {p.ref[1] for p in rest} == \
        {(f"198.18.2.{i}", 8080) for i in range(11, 16)}


def test_due_in_time_order_across_a_limit_and_each_probe_once() -> None:
    # warmup spreads the first checks: several deadlines, cut by the limit anywhere
    servers = "".join(tcp_rs(f"198.18.2.{i}", check="warmup 5") for i in range(11, 31))
    pool = E.Pool(specs(conf(servers)), rng=random.Random(7))
    pool.start(0.0)
    planned = {ref[1][0]: c.next_run for ref, _, _, c in pool.checkers()}
    started: list[str] = []
    while batch := pool.due(10.0, limit=3):
        assert len(batch) <= 3
        started += [p.ref[1][0] for p in batch]
    assert sorted(started) == sorted(planned)
    assert [planned[ip] for ip in started] == sorted(planned.values())
    assert pool.next_deadline() is None         # all running now
