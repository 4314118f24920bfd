"""rtctl v1, srsUE profile (patches/PROTOCOL.md section 14), checked without srsRAN.

The UE keeps the vBS's envelope, errors and sessions and has one threshold of its own; these
tests pin what differs, that the two peers refuse each other's messages, and that every JSON
example of section 14 is what the models read and write.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from drivers.rtctl.client import RtctlClient
from drivers.rtctl.messages import (
    ENB,
    UE,
    ErrorReply,
    RequestError,
    UePingReply,
    UeRequest,
    UeThresholds,
    UeThresholdUpdate,
    UeWindowReply,
    decode_reply,
    decode_request,
    decode_ue_reply,
    decode_ue_request,
    encode,
)
from hil.base.errors import ProtocolError, ThresholdError, VbsUnreachableError

SPEC = Path(__file__).resolve().parents[1] / "patches" / "PROTOCOL.md"
KEY = "thresholds.ul_max_tx_power_dbm"


def set_request(thresholds: Any, **envelope: Any) -> bytes:
    return json.dumps({"v": 1, "sid": "hil-ue", "seq": 1, "op": "set", "thresholds": thresholds,
                       **envelope}).encode()


def spec_examples() -> list[dict[str, Any]]:
    """The JSON blocks of section 14, in order."""
    section = SPEC.read_text().split("## 14. The srsUE profile", 1)[1]
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]


# ---- the threshold


@pytest.mark.parametrize("value", [-40, -40.0, 23, 23.0, 0, -12.5, None])
def test_the_cap_accepts_minus_40_to_23_dbm_and_null_on_both_paths(value: Any) -> None:
    assert UeThresholdUpdate.parse({"ul_max_tx_power_dbm": value}).ul_max_tx_power_dbm == value
    decoded = decode_ue_request(set_request({"ul_max_tx_power_dbm": value}))
    assert decoded.thresholds is not None
    assert decoded.thresholds.ul_max_tx_power_dbm == value


@pytest.mark.parametrize("value", [-40.01, 23.01, 30, True, "10", float("inf"), float("nan")])
def test_a_cap_out_of_range_or_not_a_number_is_refused_naming_the_key(value: Any) -> None:
    with pytest.raises(ThresholdError) as client_side:
        UeThresholdUpdate.parse({"ul_max_tx_power_dbm": value})
    assert client_side.value.key == KEY
    with pytest.raises(RequestError) as ue_side:
        decode_ue_request(set_request({"ul_max_tx_power_dbm": value}))
    assert (ue_side.value.code, ue_side.value.key) == ("bad_threshold", KEY)


def test_the_refusal_says_what_is_allowed_and_what_was_sent() -> None:
    with pytest.raises(RequestError) as info:
        decode_ue_request(set_request({"ul_max_tx_power_dbm": 24}))
    assert info.value.message == "must be a number -40..23 (dBm), or null (uncapped), got 24"


def test_an_absent_cap_keeps_its_value_and_null_uncaps() -> None:
    capped = UeThresholds().merged(UeThresholdUpdate.parse({"ul_max_tx_power_dbm": -20}))
    assert capped.ul_max_tx_power_dbm == -20
    assert capped.merged(UeThresholdUpdate.parse({})) == capped
    assert capped.merged(UeThresholdUpdate.parse({"ul_max_tx_power_dbm": None})) == UeThresholds()


def test_null_and_absent_stay_apart_through_json() -> None:
    for thresholds in ({}, {"ul_max_tx_power_dbm": None}, {"ul_max_tx_power_dbm": 5.0}):
        request = UeRequest(v=1, sid="hil-ue", seq=3, op="set",
                            thresholds=UeThresholdUpdate.parse(thresholds))
        assert json.loads(encode(request))["thresholds"] == thresholds


# ---- the two peers refuse each other's thresholds and replies


def test_the_ue_refuses_a_vbs_threshold_and_lists_its_own_key() -> None:
    with pytest.raises(RequestError) as info:
        decode_ue_request(set_request({"dl_max_mcs": 10}))
    assert (info.value.code, info.value.key) == ("bad_threshold", "thresholds.dl_max_mcs")
    assert info.value.message == "unknown key; known keys here: ul_max_tx_power_dbm"


def test_the_vbs_refuses_the_ue_threshold() -> None:
    with pytest.raises(RequestError) as info:
        decode_request(set_request({"ul_max_tx_power_dbm": 0}))
    assert (info.value.code, info.value.key) == ("bad_threshold", KEY)


def test_a_ue_reply_is_not_a_vbs_reply_and_the_other_way_round() -> None:
    ping, window = spec_examples()[:2]
    for example in (ping, window):
        with pytest.raises(ProtocolError):
            decode_reply(json.dumps(example).encode())
    vbs_ping = {"v": 1, "sid": "s", "seq": 1, "ok": True,
                "vbs": ping["node"], "applied": {"dl_gain_db": 0.0, "ue": {}}}
    with pytest.raises(ProtocolError):
        decode_ue_reply(json.dumps(vbs_ping).encode())


# ---- the envelope is the vBS's


@pytest.mark.parametrize(("raw", "code", "key"), [
    (set_request({"ul_max_tx_power_dbm": 99}, v=2), "bad_version", "v"),
    (json.dumps({"v": 1, "sid": "s", "seq": 1, "op": "set"}).encode(), "bad_request", "thresholds"),
    (json.dumps({"v": 1, "sid": "s", "seq": 1, "op": "get",
                 "thresholds": {"ul_max_tx_power_dbm": 0}}).encode(), "bad_request", "thresholds"),
    (set_request({"ul_max_tx_power_dbm": 99}, seq=0), "bad_request", "seq"),
    (b'{"v":1,"sid":"s"', "bad_request", None),
])
def test_envelope_errors_and_their_precedence_are_those_of_the_vbs(raw: bytes, code: str,
                                                                   key: str | None) -> None:
    with pytest.raises(RequestError) as ue_side:
        decode_ue_request(raw)
    assert (ue_side.value.code, ue_side.value.key) == (code, key)


# ---- the spec's examples are what the models read and write


def test_every_json_example_of_section_14_round_trips_through_the_models() -> None:
    ping, window, error, request = spec_examples()
    for example, decode, kind in ((ping, decode_ue_reply, UePingReply),
                                  (window, decode_ue_reply, UeWindowReply),
                                  (error, decode_ue_reply, ErrorReply),
                                  (request, decode_ue_request, UeRequest)):
        model = decode(json.dumps(example).encode())
        assert isinstance(model, kind)
        assert json.loads(encode(model)) == example


# ---- the client speaks to a UE with peer=UE


@pytest.fixture
def ue_socket() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A REP socket that answers like srsUE: the section 14 window example, echoing sid and
    seq, with the request's cap as applied. Yields its endpoint and the requests it got."""
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    seen: list[dict[str, Any]] = []
    reply = spec_examples()[1]

    def serve() -> None:
        while rep.poll(2000):
            request = json.loads(rep.recv())
            seen.append(request)
            applied = request.get("thresholds", {"ul_max_tx_power_dbm": None})
            rep.send_json({**reply, "sid": request["sid"], "seq": request["seq"],
                           "applied": applied})

    thread = threading.Thread(target=serve)
    thread.start()
    yield f"tcp://127.0.0.1:{port}", seen
    thread.join()
    rep.close(linger=0)
    ctx.term()


def test_the_client_sets_the_ue_cap_and_reads_the_ue_window(
        ue_socket: tuple[str, list[dict[str, Any]]]) -> None:
    endpoint, seen = ue_socket
    with RtctlClient(endpoint, peer=UE, timeout_s=2.0) as client:
        reply = client.set({"ul_max_tx_power_dbm": -20})
    assert isinstance(reply, UeWindowReply)
    assert reply.applied.ul_max_tx_power_dbm == -20
    assert reply.kpis.pusch_tti == 1863
    assert seen[0]["thresholds"] == {"ul_max_tx_power_dbm": -20.0}


def test_the_client_checks_the_ue_cap_before_sending_anything() -> None:
    with RtctlClient("tcp://127.0.0.1:1", peer=UE, timeout_s=0.05, retries=0) as client, \
            pytest.raises(ThresholdError) as info:
        client.set({"ul_max_tx_power_dbm": 24})
    assert info.value.key == KEY


def test_the_ue_client_defaults_to_the_ue_port_and_names_the_ue_when_unreachable() -> None:
    assert RtctlClient(peer=UE).endpoint == "tcp://127.0.0.1:5556"
    assert RtctlClient().endpoint == ENB.default_endpoint
    with RtctlClient("tcp://127.0.0.1:1", peer=UE, timeout_s=0.05, retries=0) as client, \
            pytest.raises(VbsUnreachableError) as info:
        client.ping()
    assert "the UE at tcp://127.0.0.1:1" in str(info.value) and "srsue" in str(info.value)
