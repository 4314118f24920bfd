"""rtctl v1 message rules (patches/PROTOCOL.md), checked without sockets.

Every threshold is checked on both paths a value can take: the client's `ThresholdUpdate.parse`
(Python values) and the vBS's `decode_request` (JSON bytes). Both must name the same key path.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from drivers.rtctl.messages import (
    CapCounters,
    CellKpis,
    ErrorBody,
    ErrorReply,
    KpiWindow,
    PingReply,
    Request,
    RequestError,
    Thresholds,
    ThresholdUpdate,
    UeCaps,
    UserKpis,
    VbsIdentity,
    WindowReply,
    decode_reply,
    decode_request,
    encode,
)
from hil.base.errors import ProtocolError, ThresholdError

NAN, INF = float("nan"), float("inf")

# (thresholds fragment builder, key path named in errors, values accepted, values rejected)
RANGES: list[tuple[str, str, list[Any], list[Any]]] = [
    ("dl_max_mcs", "thresholds.dl_max_mcs", [0, 28, None], [-1, 29, 5.0, True, "5"]),
    ("ul_max_mcs", "thresholds.ul_max_mcs", [0, 28, None], [-1, 29, 27.5, False]),
    ("dl_prb_ratio", "thresholds.dl_prb_ratio", [0, 0.0, 1, 1.0, 0.5, None],
     [-0.01, 1.01, True, NAN, INF, "0.5"]),
    ("ul_prb_ratio", "thresholds.ul_prb_ratio", [0, 1, 0.01, None], [-1e-9, 1.5, True, -INF]),
    ("dl_gain_db", "thresholds.dl_gain_db", [-40, -40.0, 0, -3.5, None],
     [-40.01, 0.01, 10, True, NAN]),
    ("ue.70.dl_max_prb", "thresholds.ue.70.dl_max_prb", [0, 110, None], [-1, 111, 1.5, True]),
    ("ue.70.ul_max_prb", "thresholds.ue.70.ul_max_prb", [0, 110, None], [-1, 111, False]),
    ("ue.70.weight", "thresholds.ue.70.weight", [1e-9, 1, 1000, 1000.0, None],
     [0, -1, 1000.001, True, INF]),
]
CASES_OK = [(field, value) for field, _, ok, _ in RANGES for value in ok]
CASES_BAD = [(field, key, value) for field, key, _, bad in RANGES for value in bad]


def fragment(field: str, value: Any) -> dict[str, Any]:
    """{"ue": {"70": {"weight": v}}} from "ue.70.weight"."""
    *path, leaf = field.split(".")
    out: dict[str, Any] = {leaf: value}
    for part in reversed(path):
        out = {part: out}
    return out


def set_request(thresholds: Any, *, sid: str = "ctl-1", seq: int = 7) -> bytes:
    return json.dumps({"v": 1, "sid": sid, "seq": seq, "op": "set",
                       "thresholds": thresholds}).encode()


def refusal(raw: bytes) -> RequestError:
    with pytest.raises(RequestError) as info:
        decode_request(raw)
    return info.value


# ---- threshold ranges, on the client path and on the vBS path


@pytest.mark.parametrize("field,value", CASES_OK, ids=[f"{f}={v!r}" for f, v in CASES_OK])
def test_range_edges_and_null_are_accepted_by_client_and_vbs(field: str, value: Any) -> None:
    data = fragment(field, value)
    client_side = ThresholdUpdate.parse(data)
    vbs_side = decode_request(set_request(data)).thresholds
    assert json.loads(client_side.model_dump_json()) == data
    assert vbs_side == client_side


@pytest.mark.parametrize("field,key,value", CASES_BAD,
                         ids=[f"{f}={v!r}" for f, _, v in CASES_BAD])
def test_out_of_range_or_wrong_type_is_refused_naming_the_key(field: str, key: str,
                                                              value: Any) -> None:
    data = fragment(field, value)
    with pytest.raises(ThresholdError) as client_side:
        ThresholdUpdate.parse(data)
    assert client_side.value.key == key
    vbs_side = refusal(set_request(data))
    assert (vbs_side.code, vbs_side.key) == ("bad_threshold", key)


def test_threshold_error_says_what_is_allowed_and_what_was_sent() -> None:
    error = refusal(set_request({"dl_max_mcs": 29}))
    assert "0..28" in error.message and "29" in error.message


@pytest.mark.parametrize("rnti", ["1", "65523", 70])
def test_rnti_keys_in_range_are_accepted(rnti: str | int) -> None:
    assert list(ThresholdUpdate.parse({"ue": {rnti: {"weight": 2}}}).ue or {}) == [int(rnti)]


@pytest.mark.parametrize("rnti", ["0", "65524", "070", "+70", "7 0", "abc", "1.0", ""])
def test_rnti_keys_that_are_not_canonical_decimals_in_range_are_refused(rnti: str) -> None:
    error = refusal(set_request({"ue": {rnti: {"weight": 2}}}))
    assert (error.code, error.key) == ("bad_threshold", f"thresholds.ue.{rnti}")


def test_bool_rnti_key_is_refused_on_the_client_path() -> None:
    with pytest.raises(ThresholdError):
        ThresholdUpdate.parse({"ue": {True: {"weight": 2}}})


@pytest.mark.parametrize("data,key", [
    ({"dl_mcs_max": 3}, "thresholds.dl_mcs_max"),
    ({"ue": {"70": {"dl_prb": 3}}}, "thresholds.ue.70.dl_prb"),
])
def test_unknown_threshold_key_is_refused_and_the_known_keys_are_listed(data: dict,
                                                                        key: str) -> None:
    with pytest.raises(ThresholdError) as client_side:
        ThresholdUpdate.parse(data)
    vbs_side = refusal(set_request(data))
    assert client_side.value.key == vbs_side.key == key
    assert vbs_side.code == "bad_threshold"
    assert ("dl_max_mcs" if key.count(".") == 1 else "dl_max_prb") in vbs_side.message


def test_one_bad_value_refuses_the_whole_request() -> None:
    error = refusal(set_request({"dl_max_mcs": 10, "dl_prb_ratio": 2, "ul_max_mcs": 5}))
    assert error.key == "thresholds.dl_prb_ratio"


def test_thresholds_that_are_not_an_object_are_refused() -> None:
    with pytest.raises(ThresholdError) as info:
        ThresholdUpdate.parse([("dl_max_mcs", 3)])
    assert info.value.key == "thresholds"
    assert refusal(set_request(5)).key == "thresholds"


# ---- merging a set into the state in force


def test_absent_keys_keep_their_value() -> None:
    state = Thresholds(dl_max_mcs=10, ul_prb_ratio=0.3, dl_gain_db=-6,
                       ue={70: UeCaps(dl_max_prb=5)})
    after = state.merged(ThresholdUpdate.parse({"dl_prb_ratio": 0.5}))
    assert after == Thresholds(dl_max_mcs=10, ul_prb_ratio=0.3, dl_gain_db=-6,
                               dl_prb_ratio=0.5, ue={70: UeCaps(dl_max_prb=5)})


def test_null_removes_a_cap_and_resets_the_gain_to_0_db() -> None:
    state = Thresholds(dl_max_mcs=10, ul_max_mcs=5, dl_gain_db=-6)
    after = state.merged(ThresholdUpdate.parse({"dl_max_mcs": None, "dl_gain_db": None}))
    assert (after.dl_max_mcs, after.ul_max_mcs, after.dl_gain_db) == (None, 5, 0.0)


def test_ue_entries_merge_field_by_field() -> None:
    state = Thresholds(ue={70: UeCaps(dl_max_prb=10, weight=2.0), 71: UeCaps(ul_max_prb=3)})
    after = state.merged(ThresholdUpdate.parse(
        {"ue": {"70": {"weight": None, "ul_max_prb": 20}, "72": {"dl_max_prb": 0}}}))
    assert after.ue == {70: UeCaps(dl_max_prb=10, ul_max_prb=20), 71: UeCaps(ul_max_prb=3),
                        72: UeCaps(dl_max_prb=0)}


def test_null_ue_entry_removes_that_users_caps_only() -> None:
    state = Thresholds(ue={70: UeCaps(dl_max_prb=10), 71: UeCaps(ul_max_prb=3)})
    after = state.merged(ThresholdUpdate.parse({"ue": {"70": None}}))
    assert after.ue == {71: UeCaps(ul_max_prb=3)}


def test_a_user_left_without_caps_disappears_and_null_ue_removes_all_users() -> None:
    state = Thresholds(ue={70: UeCaps(dl_max_prb=10), 71: UeCaps(ul_max_prb=3)})
    emptied = state.merged(ThresholdUpdate.parse({"ue": {"70": {"dl_max_prb": None}}}))
    assert list(emptied.ue) == [71]
    assert state.merged(ThresholdUpdate.parse({"ue": None})).ue == {}


def test_merged_leaves_the_original_state_unchanged() -> None:
    state = Thresholds(dl_max_mcs=10, ue={70: UeCaps(dl_max_prb=10)})
    state.merged(ThresholdUpdate.parse({"dl_max_mcs": 3, "ue": {"70": None}}))
    assert state == Thresholds(dl_max_mcs=10, ue={70: UeCaps(dl_max_prb=10)})


# ---- encoding


def test_set_request_round_trips_with_null_and_absent_keys_kept_apart() -> None:
    update = ThresholdUpdate.parse({"dl_max_mcs": None, "ul_prb_ratio": 0.25,
                                    "ue": {70: {"weight": 3}}})
    request = Request(v=1, sid="ctl-1", seq=3, op="set", thresholds=update)
    wire = json.loads(encode(request))
    assert wire == {"v": 1, "sid": "ctl-1", "seq": 3, "op": "set",
                    "thresholds": {"dl_max_mcs": None, "ul_prb_ratio": 0.25,
                                   "ue": {"70": {"weight": 3.0}}}}
    decoded = decode_request(encode(request))
    assert decoded == request
    assert decoded.thresholds is not None
    assert decoded.thresholds.model_fields_set == {"dl_max_mcs", "ul_prb_ratio", "ue"}


def test_requests_without_thresholds_carry_no_thresholds_key() -> None:
    assert json.loads(encode(Request(v=1, sid="a", seq=1, op="get"))) == {
        "v": 1, "sid": "a", "seq": 1, "op": "get"}


def kpis(seed: int) -> CellKpis:
    counters = CapCounters(dl_mcs=seed, dl_prb=1, ul_mcs=2, ul_prb=3)
    ints = {k: seed * 1000 + i for i, k in enumerate(
        ["dl_bits_acked", "ul_bits_ok", "dl_bits_arrived", "ul_bits_arrived", "dl_prb_tti",
         "ul_prb_tti", "dl_sched_tti", "ul_sched_tti", "dl_backlog_bytes", "ul_backlog_bytes"])}
    return CellKpis(**ints, dl_mcs_mean=27.5, ul_mcs_mean=20.25, dl_cqi_mean=11.0,
                    ul_snr_mean=-1.5, dl_bler=0.1, ul_bler=0.0, cap_hits=counters,
                    violations=CapCounters(dl_mcs=0, dl_prb=0, ul_mcs=0, ul_prb=0))


def user(cell: CellKpis, qci: int | None) -> UserKpis:
    return UserKpis(**dict(cell), qci=qci)


REPLIES = [
    PingReply(v=1, sid="a", seq=1, ok=True, applied=Thresholds(dl_max_mcs=3),
              vbs=VbsIdentity(name="srsenb", version="23.11", protocol=1, boot_id="b-1",
                              uptime_s=12.5, tti=12500)),
    WindowReply(v=1, sid="a", seq=2, ok=True, applied_tti=12000,
                applied=Thresholds(dl_prb_ratio=0.5, ue={70: UeCaps(weight=2.0)}),
                window=KpiWindow(tti_start=11000, tti_end=12000, nof_tti=1000, wall_s=1.18),
                cell=kpis(1), ue={70: user(kpis(2), qci=9), 71: user(kpis(3), qci=None)}),
    ErrorReply(v=1, sid=None, seq=None, ok=False,
               error=ErrorBody(code="bad_request", key=None, message="Invalid JSON")),
]


@pytest.mark.parametrize("reply", REPLIES, ids=lambda r: type(r).__name__)
def test_replies_round_trip_through_json(reply: Any) -> None:
    assert decode_reply(encode(reply)) == reply


def test_a_user_s_qci_is_read_when_the_vbs_reports_it_and_unknown_when_it_does_not() -> None:
    wire = json.loads(encode(REPLIES[1]))
    assert wire["ue"]["70"]["qci"] == 9
    del wire["ue"]["71"]["qci"]  # a vBS that does not know it yet leaves it out
    reply = decode_reply(json.dumps(wire).encode())
    assert isinstance(reply, WindowReply)
    assert (reply.ue[70].qci, reply.ue[71].qci) == (9, None)
    wire["ue"]["70"]["qci"] = 0  # QCIs are 1..255 (3GPP TS 23.203)
    with pytest.raises(ProtocolError):
        decode_reply(json.dumps(wire).encode())


def test_applied_thresholds_show_every_key_with_null_for_uncapped() -> None:
    wire = json.loads(encode(REPLIES[1]))
    assert wire["applied"] == {"dl_max_mcs": None, "ul_max_mcs": None, "dl_prb_ratio": 0.5,
                               "ul_prb_ratio": None, "dl_gain_db": 0.0,
                               "ue": {"70": {"dl_max_prb": None, "ul_max_prb": None,
                                             "weight": 2.0}}}
    assert list(wire["ue"]) == ["70", "71"]


def test_replies_ignore_unknown_keys_so_a_vbs_may_report_more() -> None:
    wire = json.loads(encode(REPLIES[1]))
    wire["cell"]["dl_rsrp_dbm"] = -80.0
    wire["extra"] = 1
    assert decode_reply(json.dumps(wire).encode()) == REPLIES[1]


def test_signalling_exempt_counts_are_read_and_absent_ones_are_zero() -> None:
    wire = json.loads(encode(REPLIES[1]))
    wire["cell"]["signalling_exempt"] = {"dl_mcs": 0, "dl_prb": 4, "ul_mcs": 0, "ul_prb": 9}
    del wire["ue"]["70"]["signalling_exempt"]
    reply = decode_reply(json.dumps(wire).encode())
    assert isinstance(reply, WindowReply)
    assert (reply.cell.signalling_exempt.dl_prb, reply.cell.signalling_exempt.ul_prb) == (4, 9)
    assert reply.ue[70].signalling_exempt.model_dump() == {"dl_mcs": 0, "dl_prb": 0,
                                                          "ul_mcs": 0, "ul_prb": 0}


V2_ERROR = json.dumps({"v": 2, "sid": "a", "seq": 1, "ok": False,
                       "error": {"code": "internal", "key": None, "message": "x"}}).encode()


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'{"v":1,"ok":true}', V2_ERROR])
def test_what_is_not_a_v1_reply_raises_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_reply(raw)


# ---- request envelope errors


def envelope(**fields: Any) -> bytes:
    base: dict[str, Any] = {"v": 1, "sid": "ctl-1", "seq": 5, "op": "get"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


@pytest.mark.parametrize("raw", [b"{bad json", b"\xff\xfe{}", b"", b"[1, 2]", b'"get"', b"null"])
def test_unreadable_json_is_a_bad_request_without_sid_or_seq(raw: bytes) -> None:
    error = refusal(raw)
    assert (error.code, error.key, error.sid, error.seq) == ("bad_request", None, None, None)


@pytest.mark.parametrize("v", [2, 0, True, "1", 1.0, None])
def test_a_version_other_than_the_integer_1_is_bad_version(v: Any) -> None:
    error = refusal(envelope(v=v))
    assert (error.code, error.key) == ("bad_version", "v")


def test_bad_version_wins_over_other_errors() -> None:
    assert refusal(envelope(v=2, op="fly", extra=1)).code == "bad_version"


@pytest.mark.parametrize("fields,key", [
    ({"op": "fly"}, "op"), ({"op": "SET"}, "op"), ({"op": ...}, "op"),
    ({"v": ...}, "v"), ({"seq": ...}, "seq"), ({"sid": ...}, "sid"),
    ({"seq": 0}, "seq"), ({"seq": True}, "seq"), ({"seq": 2.0}, "seq"), ({"seq": 2**63}, "seq"),
    ({"sid": ""}, "sid"), ({"sid": "a b"}, "sid"), ({"sid": "x" * 65}, "sid"), ({"sid": 5}, "sid"),
    ({"extra": 1}, "extra"),
    ({"op": "set"}, "thresholds"), ({"op": "set", "thresholds": None}, "thresholds"),
    ({"op": "get", "thresholds": {}}, "thresholds"),
    ({"op": "ping", "thresholds": {"dl_max_mcs": 3}}, "thresholds"),
])
def test_envelope_errors_are_bad_request_naming_the_key(fields: dict, key: str) -> None:
    error = refusal(envelope(**fields))
    assert (error.code, error.key) == ("bad_request", key)


def test_a_refusal_carries_sid_and_seq_where_they_are_valid() -> None:
    error = refusal(envelope(op="fly", sid="ctl-9", seq=42))
    assert (error.sid, error.seq) == ("ctl-9", 42)
    error = refusal(envelope(op="fly", sid="bad sid", seq=-3))
    assert (error.sid, error.seq) == (None, None)


def test_an_oversized_request_is_refused_unread() -> None:
    raw = envelope(op="set", thresholds={"ue": {str(r): {"weight": 1} for r in range(1, 5000)}})
    assert refusal(raw).code == "bad_request"


@pytest.mark.parametrize("op", ["ping", "get", "reset"])
def test_well_formed_requests_decode(op: str) -> None:
    assert decode_request(envelope(op=op, seq=9)) == Request(v=1, sid="ctl-1", seq=9, op=op)
