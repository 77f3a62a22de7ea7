"""BFD Control packets (RFC 5880 section 4.1) and the context-free discard rules of 6.8.6."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from keepalived_py.bfd import packet
from keepalived_py.bfd.packet import Control, Diag, Discard, State


def control(**kw: object) -> Control:
    fields = {"state": State.DOWN, "my_discr": 0x1111, "your_discr": 0, "detect_mult": 3}
    fields.update(kw)
    return Control(**fields)  # type: ignore[arg-type]


def test_encode_matches_the_rfc_layout() -> None:
    pkt = control(state=State.UP, diag=Diag.NEIGHBOR_DOWN, poll=True, detect_mult=3,
                  my_discr=0x01020304, your_discr=0x0A0B0C0D, desired_min_tx_us=10_000,
                  required_min_rx_us=20_000, required_min_echo_rx_us=0)
    assert packet.encode(pkt).hex(" ", 4) == (
        "23e00318 01020304 0a0b0c0d 00002710 00004e20 00000000")


def test_pack_into_writes_what_encode_does() -> None:
    buf = bytearray(30)
    packet.pack_into(buf, 3, State.INIT, Diag.CONTROL_DETECTION_EXPIRED, packet.FINAL, 5,
                     7, 9, 1_000_000, 300_000)
    expected = packet.encode(control(state=State.INIT, diag=1, final=True, detect_mult=5,
                                     my_discr=7, your_discr=9, desired_min_tx_us=1_000_000,
                                     required_min_rx_us=300_000))
    assert bytes(buf[3:27]) == expected


def test_decode_fills_every_field() -> None:
    pkt = control(state=State.UP, diag=Diag.PATH_DOWN, final=True, cpi=True, demand=True,
                  detect_mult=255, my_discr=0xFFFFFFFF, your_discr=1,
                  desired_min_tx_us=3_300, required_min_rx_us=0xFFFFFFFF,
                  required_min_echo_rx_us=50_000)
    assert packet.decode(packet.encode(pkt)) == pkt


def test_decode_into_a_given_instance() -> None:
    out = Control()
    result = packet.decode(packet.encode(control(my_discr=42)), out)
    assert result is out and out.my_discr == 42


def test_reserved_diagnostic_codes_decode() -> None:
    result = packet.decode(packet.encode(control(diag=31)))
    assert isinstance(result, Control) and result.diag == 31


def test_bytes_after_length_are_ignored() -> None:
    # 6.8.6 discards only when Length exceeds the payload (keepalived 2.2.7 wants equality).
    result = packet.decode(packet.encode(control(my_discr=5)) + b"\0\0\0\0")
    assert isinstance(result, Control) and result.my_discr == 5 and result.length == 24


@pytest.mark.parametrize(("data", "reason"), [
    (b"", Discard.TRUNCATED),
    (b"\x20\xc0", Discard.TRUNCATED),
    (packet.encode(control(version=0)), Discard.VERSION),
    (packet.encode(control(version=2)), Discard.VERSION),
    (packet.encode(control(length=23)), Discard.LENGTH_TOO_SHORT),
    (packet.encode(control(length=25, auth=True)) + b"\0", Discard.LENGTH_TOO_SHORT),
    (packet.encode(control(length=25)), Discard.LENGTH_EXCEEDS_PAYLOAD),
    (packet.encode(control())[:23], Discard.LENGTH_EXCEEDS_PAYLOAD),
    (packet.encode(control(detect_mult=0)), Discard.DETECT_MULT_ZERO),
    (packet.encode(control(multipoint=True)), Discard.MULTIPOINT),
    (packet.encode(control(my_discr=0)), Discard.MY_DISCR_ZERO),
    (packet.encode(control(state=State.INIT, your_discr=0)), Discard.YOUR_DISCR_ZERO),
    (packet.encode(control(state=State.UP, your_discr=0)), Discard.YOUR_DISCR_ZERO),
], ids=lambda v: v.name if isinstance(v, Discard) else None)
def test_each_discard_rule(data: bytes, reason: Discard) -> None:
    assert packet.decode(data) is reason


@pytest.mark.parametrize("state", [State.DOWN, State.ADMIN_DOWN])
def test_your_discr_zero_is_fine_while_down(state: State) -> None:
    assert isinstance(packet.decode(packet.encode(control(state=state, your_discr=0))), Control)


def test_the_first_broken_rule_in_rfc_order_is_reported() -> None:
    everything_wrong = control(version=0, detect_mult=0, multipoint=True, my_discr=0)
    assert packet.decode(packet.encode(everything_wrong)) is Discard.VERSION
    assert packet.decode(packet.encode(dataclasses.replace(everything_wrong, version=1))) \
        is Discard.DETECT_MULT_ZERO


def test_the_a_bit_is_left_to_the_engine() -> None:
    # 6.8.6 checks A after the discriminator lookup, which needs the session.
    data = packet.encode(control(auth=True, length=26)) + b"\x01\x02"
    result = packet.decode(data)
    assert isinstance(result, Control) and result.auth


def test_discard_labels_are_metric_friendly() -> None:
    assert Discard.YOUR_DISCR_UNKNOWN.label == "your_discr_unknown"
    assert [int(r) for r in Discard] == list(range(len(Discard)))


@given(st.binary(max_size=64))
def test_decode_never_raises(data: bytes) -> None:
    result = packet.decode(data)
    assert isinstance(result, Control | Discard)


@given(st.binary(min_size=24, max_size=24))
def test_decode_never_raises_on_headers_that_look_right(tail: bytes) -> None:
    data = bytes([0x20, tail[1], max(tail[2], 1), 24]) + tail[4:]
    result = packet.decode(memoryview(bytearray(data)))
    assert isinstance(result, Control | Discard)


@given(state=st.sampled_from(State), diag=st.integers(0, 31), flags=st.integers(0, 0x3E),
       mult=st.integers(1, 255), discrs=st.tuples(st.integers(1, 2**32 - 1),
                                                   st.integers(1, 2**32 - 1)),
       times=st.tuples(*[st.integers(0, 2**32 - 1)] * 3))
def test_round_trip(state: State, diag: int, flags: int, mult: int,
                    discrs: tuple[int, int], times: tuple[int, int, int]) -> None:
    flags &= ~(packet.AUTH | packet.MULTIPOINT)     # A needs an auth section; M is discarded
    buf = bytearray(24)
    packet.pack_into(buf, 0, state, diag, flags, mult, *discrs, *times)
    result = packet.decode(buf)
    assert isinstance(result, Control)
    assert (result.state, result.diag, result.flags, result.detect_mult) == \
        (state, diag, flags, mult)
    assert (result.my_discr, result.your_discr) == discrs
    assert (result.desired_min_tx_us, result.required_min_rx_us,
            result.required_min_echo_rx_us) == times
