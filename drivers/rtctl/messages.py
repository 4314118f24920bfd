"""rtctl v1 messages: the one place where requests and replies are typed and validated.

The controller's client, the Python vBS server, the emulated vBS and the tests all use these
models, so a rule lives in exactly one place. The C++ srsENB and srsUE patches implement the
same rules from `patches/PROTOCOL.md`; a change here is a change to that spec.

Two peers speak v1 with the same envelope, errors, sessions and seq rules: the vBS (srsENB:
`Request`, `PingReply`, `WindowReply`) and, on a socket of its own, the UE (srsUE, section 14
of the spec: `UeRequest`, `UePingReply`, `UeWindowReply`). `ENB` and `UE` bundle each peer's
models for code that talks to either (the client).

Wire rules enforced by the models (strict pydantic, so a JSON `true` is never an integer and
`5.0` is not an MCS): requests reject unknown keys; replies ignore unknown keys, so a vBS may
add KPI fields without breaking older controllers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from hil.base.errors import ProtocolError, ThresholdError
from hil.base.thresholds import MAX_MCS, MAX_PRB, MIN_GAIN_DB, POLICY, USER_PRB

PROTOCOL_VERSION = 1
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
MAX_RNTI = 65523
MAX_WEIGHT = 1000.0
MAX_SEQ = 2**63 - 1
MAX_REQUEST_BYTES = 65536
"""Larger requests are refused unread (bad_request): a v1 request is a few hundred bytes."""
UE_DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
MIN_TX_POWER_DBM = -40.0
"""Lowest UE tx power cap: the minimum output power of TS 36.101 (6.3.2)."""
MAX_TX_POWER_DBM = 23.0
"""Highest UE tx power cap: P_CMAX of a power class 3 UE, the most it ever sends."""

ErrorCode = Literal["bad_request", "bad_version", "bad_threshold", "stale_seq", "internal"]
Op = Literal["ping", "get", "set", "reset"]


# ---- value types shared by requests, state and replies

_RNTI_KEY = re.compile(r"[1-9][0-9]{0,4}")


def _rnti_from_key(value: object) -> object:
    """RNTIs are JSON object keys, hence canonical decimal strings on the wire ("70", not
    "070"); Python callers may also use ints. Anything else fails the int check after this."""
    if isinstance(value, str) and _RNTI_KEY.fullmatch(value):
        return int(value)
    return value


def _is_v1(version: int) -> int:
    if version != PROTOCOL_VERSION:
        raise PydanticCustomError(
            "bad_version", "this peer speaks rtctl v{expected}, the message says v{got}",
            {"expected": PROTOCOL_VERSION, "got": version})
    return version


Version = Annotated[int, AfterValidator(_is_v1)]
Sid = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Seq = Annotated[int, Field(ge=1, le=MAX_SEQ)]
Rnti = Annotated[int, Field(ge=1, le=MAX_RNTI), BeforeValidator(_rnti_from_key)]
Mcs = Annotated[int, Field(ge=0, le=MAX_MCS)]
PrbRatio = Annotated[float, Field(ge=0.0, le=1.0)]
GainDb = Annotated[float, Field(ge=MIN_GAIN_DB, le=0.0)]
Prb = Annotated[int, Field(ge=0, le=MAX_PRB)]
Weight = Annotated[float, Field(gt=0.0, le=MAX_WEIGHT)]
TxPowerDbm = Annotated[float, Field(ge=MIN_TX_POWER_DBM, le=MAX_TX_POWER_DBM)]
Count = Annotated[int, Field(ge=0)]
Qci = Annotated[int, Field(ge=1, le=255)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(ge=0.0)]


class _Wire(BaseModel):
    """Strict JSON types (bool is not int, NaN/inf refused), unknown keys refused, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class _ReplyPart(_Wire):
    """Reply parts ignore unknown keys: a vBS may report more than this controller knows."""

    model_config = ConfigDict(extra="ignore")


class _Partial(_Wire):
    """A partial update: an absent key keeps its value, `null` removes the cap.

    Serialises only the keys that were given, so `null` (remove) and absent (keep) survive a
    round trip through JSON.
    """

    @model_serializer(mode="wrap")
    def _only_given_keys(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}


# ---- thresholds: the state in force and a set's partial update


class UeCaps(_Wire):
    """One user's caps in force; None = uncapped (weight None = the default weight 1)."""

    dl_max_prb: Prb | None = None
    ul_max_prb: Prb | None = None
    weight: Weight | None = None


class UeCapsUpdate(_Partial):
    """A set's change to one user's caps."""

    dl_max_prb: Prb | None = None
    ul_max_prb: Prb | None = None
    weight: Weight | None = None


class ThresholdUpdate(_Partial):
    """The `thresholds` object of a `set`; `model_fields_set` says which keys were given."""

    dl_max_mcs: Mcs | None = None
    ul_max_mcs: Mcs | None = None
    dl_prb_ratio: PrbRatio | None = None
    ul_prb_ratio: PrbRatio | None = None
    dl_gain_db: GainDb | None = None
    ue: dict[Rnti, UeCapsUpdate | None] | None = None

    @classmethod
    def parse(cls, data: object) -> ThresholdUpdate:
        """Validate a thresholds mapping exactly as the vBS does; raises ThresholdError naming
        the key path as the vBS would (`thresholds.ue.70.dl_max_prb`)."""
        return _parse_thresholds(cls, data, _ENB_ALLOWED)


class Thresholds(_Wire):
    """All thresholds in force at the vBS; None = uncapped."""

    dl_max_mcs: Mcs | None = None
    ul_max_mcs: Mcs | None = None
    dl_prb_ratio: PrbRatio | None = None
    ul_prb_ratio: PrbRatio | None = None
    dl_gain_db: GainDb = 0.0
    ue: dict[Rnti, UeCaps] = {}

    def merged(self, update: ThresholdUpdate) -> Thresholds:
        """The state after `update`: given keys replace, `null` uncaps, absent keys stay."""
        given = update.model_fields_set
        changes: dict[str, Any] = {k: getattr(update, k) for k in given - {"dl_gain_db", "ue"}}
        if "dl_gain_db" in given:
            changes["dl_gain_db"] = 0.0 if update.dl_gain_db is None else update.dl_gain_db
        if "ue" in given:
            changes["ue"] = _merged_ue(self.ue, update.ue)
        return self.model_copy(update=changes)


_U = TypeVar("_U", bound=_Partial)


def _parse_thresholds(model: type[_U], data: object,
                      allowed: dict[tuple[str, ...], str]) -> _U:
    """A `thresholds` object validated as its peer does; ThresholdError names the key path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = ("thresholds", *error["loc"])
        raise ThresholdError(_key_path(loc) or "thresholds", _reason(loc, error, allowed)) from None


def _merged_ue(current: dict[int, UeCaps],
               update: dict[int, UeCapsUpdate | None] | None) -> dict[int, UeCaps]:
    """Per-user caps merge like the top level; a user left without any cap is dropped."""
    if update is None:
        return {}
    merged = dict(current)
    for rnti, entry in update.items():
        old = merged.pop(rnti, UeCaps())
        if entry is None:
            continue
        caps = old.model_copy(update={k: getattr(entry, k) for k in entry.model_fields_set})
        if any(v is not None for v in caps.model_dump().values()):
            merged[rnti] = caps
    return merged


class UeThresholdUpdate(_Partial):
    """The `thresholds` object of a `set` to a UE (spec section 14)."""

    ul_max_tx_power_dbm: TxPowerDbm | None = None

    @classmethod
    def parse(cls, data: object) -> UeThresholdUpdate:
        """Validate as the UE does; raises ThresholdError naming the key path."""
        return _parse_thresholds(cls, data, _UE_ALLOWED)


class UeThresholds(_Wire):
    """The UE's threshold in force: its uplink tx power cap in dBm, None = uncapped (P_CMAX)."""

    ul_max_tx_power_dbm: TxPowerDbm | None = None

    def merged(self, update: UeThresholdUpdate) -> UeThresholds:
        """The state after `update`: given keys replace (`null` uncaps), absent keys stay."""
        return self.model_copy(update={k: getattr(update, k) for k in update.model_fields_set})


# ---- requests


class _Envelope(_Wire):
    """`{"v":1,"sid":S,"seq":N,"op":OP}`, plus `"thresholds"` for `set` only; each peer's
    request adds its own `thresholds` field."""

    v: Version
    sid: Sid
    seq: Seq
    op: Op

    @field_validator("thresholds", check_fields=False)
    @classmethod
    def _thresholds_with_set_only(cls, value: BaseModel | None,
                                  info: ValidationInfo) -> BaseModel | None:
        op = info.data.get("op")  # absent when op itself was invalid
        if op == "set" and value is None:
            raise PydanticCustomError("thresholds_missing", "op set needs a thresholds object")
        if op is not None and op != "set" and value is not None:
            raise PydanticCustomError("thresholds_unexpected", "op {op} takes no thresholds",
                                      {"op": op})
        return value


class Request(_Envelope):
    """A request to the vBS."""

    thresholds: ThresholdUpdate | None = Field(
        default=None, validate_default=True, exclude_if=lambda t: t is None)


class UeRequest(_Envelope):
    """A request to the UE (spec section 14)."""

    thresholds: UeThresholdUpdate | None = Field(
        default=None, validate_default=True, exclude_if=lambda t: t is None)


class RequestError(ProtocolError):
    """Why the vBS refuses a request: exactly the fields of its error reply."""

    def __init__(self, code: ErrorCode, key: str | None, message: str, *,
                 sid: str | None = None, seq: int | None = None) -> None:
        self.code, self.key, self.message, self.sid, self.seq = code, key, message, sid, seq
        where = f" at {key}" if key else ""
        super().__init__(f"{code}{where}: {message}")


_R = TypeVar("_R", bound=_Envelope)


def decode_request(raw: bytes) -> Request:
    """Parse and fully validate one request frame to the vBS; raises RequestError with the
    reply's code.

    Precedence when several things are wrong: bad_version (a newer peer may differ in every
    other field), then bad_request (envelope), then bad_threshold (inside `thresholds`).
    """
    return _decode_request(raw, Request, _ENB_ALLOWED)


def decode_ue_request(raw: bytes) -> UeRequest:
    """`decode_request` for the UE: same envelope and precedence, the UE's thresholds."""
    return _decode_request(raw, UeRequest, _UE_ALLOWED)


def _decode_request(raw: bytes, model: type[_R],
                    allowed: dict[tuple[str, ...], str]) -> _R:
    if len(raw) > MAX_REQUEST_BYTES:
        raise RequestError("bad_request", None,
                           f"request of {len(raw)} bytes; the limit is {MAX_REQUEST_BYTES}")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors()
    version = [e for e in errors if e["loc"][:1] == ("v",) and e["type"] != "missing"]
    envelope = [e for e in errors if len(e["loc"]) < 2 or e["loc"][0] != "thresholds"]
    if version:
        code, error = "bad_version", version[0]
    elif envelope:
        code, error = "bad_request", envelope[0]
    else:
        code, error = "bad_threshold", errors[0]
    sid, seq = _readable_ids(raw)
    raise RequestError(code, _key_path(error["loc"]) or None,
                       _reason(error["loc"], error, allowed), sid=sid, seq=seq)


def _readable_ids(raw: bytes) -> tuple[str | None, int | None]:
    """sid and seq of a refused request, where valid, so the error reply can carry them."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    return _valid_or_none(_SID, data.get("sid")), _valid_or_none(_SEQ, data.get("seq"))


_SID: TypeAdapter[str] = TypeAdapter(Sid, config=ConfigDict(strict=True))
_SEQ: TypeAdapter[int] = TypeAdapter(Seq, config=ConfigDict(strict=True))


def _valid_or_none(adapter: TypeAdapter[Any], value: object) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return None


# ---- error texts: every error names what is allowed, so an operator can fix the request

_ENVELOPE_ALLOWED: dict[tuple[str, ...], str] = {
    (): "a JSON object",
    ("v",): f"the integer {PROTOCOL_VERSION}",
    ("sid",): "a string of 1..64 characters from A-Z a-z 0-9 _ -",
    ("seq",): f"an integer 1..{MAX_SEQ}",
    ("op",): "one of ping, get, set, reset",
    ("thresholds",): "an object of thresholds (with op set only)",
}
_UE_ALLOWED: dict[tuple[str, ...], str] = {
    **_ENVELOPE_ALLOWED,
    ("thresholds", "ul_max_tx_power_dbm"):
        f"a number {MIN_TX_POWER_DBM:g}..{MAX_TX_POWER_DBM:g} (dBm), or null (uncapped)",
}
_ENB_ALLOWED: dict[tuple[str, ...], str] = {
    **_ENVELOPE_ALLOWED,
    **{("thresholds", t.name): t.describe() for t in POLICY},
    ("thresholds", "ue"): "an object keyed by RNTI, or null (remove all per-user caps)",
    ("thresholds", "ue", "<rnti>", "[key]"): f"an RNTI as a decimal string 1..{MAX_RNTI}",
    ("thresholds", "ue", "<rnti>"): "an object of per-user caps, or null (remove them)",
    ("thresholds", "ue", "<rnti>", "dl_max_prb"): USER_PRB.describe(),
    ("thresholds", "ue", "<rnti>", "ul_max_prb"): USER_PRB.describe(),
    ("thresholds", "ue", "<rnti>", "weight"):
        f"a number > 0 and <= {MAX_WEIGHT:g}, or null (default weight 1)",
}


def _key_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as the wire names it: `thresholds.ue.70.dl_max_prb`."""
    return ".".join(str(part) for part in loc if part != "[key]")


def _reason(loc: tuple[int | str, ...], error: ErrorDetails,
            allowed_texts: dict[tuple[str, ...], str]) -> str:
    shape = tuple("<rnti>" if i == 2 and loc[:2] == ("thresholds", "ue") else str(part)
                  for i, part in enumerate(loc))
    kind = error["type"]
    if kind == "json_invalid":
        return f"{error['msg']}; a request is one UTF-8 JSON object"
    if kind == "extra_forbidden":
        known = [s[-1] for s in allowed_texts if len(s) == len(shape)
                 and s[:-1] == shape[:-1] and s[-1] != "[key]"]
        return f"unknown key; known keys here: {', '.join(known)}"
    if kind in ("bad_version", "thresholds_missing", "thresholds_unexpected"):
        return error["msg"]
    allowed = allowed_texts.get(shape)
    if allowed is None:
        return error["msg"]
    if kind == "missing":
        return f"missing; must be {allowed}"
    return f"must be {allowed}, got {_shown(error['input'])}"


def _shown(value: object) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---- replies


class VbsIdentity(_ReplyPart):
    """Who answers (the vBS; the UE under `node`): `boot_id` changes when it restarts (and
    forgets all sessions)."""

    name: str
    version: str
    protocol: int
    boot_id: str
    uptime_s: Seconds
    tti: Count


class KpiWindow(_ReplyPart):
    """TTIs [tti_start, tti_end) since the previous window-closing request."""

    tti_start: Count
    tti_end: Count
    nof_tti: Count
    wall_s: Seconds


class CapCounters(_ReplyPart):
    """TTI counts per capped quantity."""

    dl_mcs: Count
    dl_prb: Count
    ul_mcs: Count
    ul_prb: Count


class CellKpis(_ReplyPart):
    """What one window delivered, for the cell or for one user (definitions: PROTOCOL.md)."""

    dl_bits_acked: Count
    ul_bits_ok: Count
    dl_bits_arrived: Count
    ul_bits_arrived: Count
    dl_prb_tti: Count
    ul_prb_tti: Count
    dl_sched_tti: Count
    ul_sched_tti: Count
    dl_mcs_mean: float
    ul_mcs_mean: float
    dl_cqi_mean: float
    ul_snr_mean: float
    dl_backlog_bytes: Count
    ul_backlog_bytes: Count
    dl_bler: Fraction
    ul_bler: Fraction
    cap_hits: CapCounters
    violations: CapCounters
    # TTIs whose cell PRB budget was lifted for signalling (PROTOCOL.md 5.2); a vBS without
    # the exemption (the emulator: it models no signalling) leaves it out
    signalling_exempt: CapCounters = CapCounters(dl_mcs=0, dl_prb=0, ul_mcs=0, ul_prb=0)


class UserKpis(CellKpis):
    """One user's KPIs, and what the vBS knows of the user: the QCI of its default EPS bearer
    (3GPP TS 23.203 table 6.1.7), which is how a slicing scheduler tells its slice; left out
    (None) by a vBS that does not know it yet (srsENB: before the E-RAB setup)."""

    qci: Qci | None = None


class PingReply(_ReplyPart):
    v: Version
    sid: Sid
    seq: Seq
    ok: Literal[True]
    vbs: VbsIdentity
    applied: Thresholds


class WindowReply(_ReplyPart):
    """Reply to get/set/reset: the thresholds now in force and the window just closed."""

    v: Version
    sid: Sid
    seq: Seq
    ok: Literal[True]
    applied: Thresholds
    applied_tti: Count
    window: KpiWindow
    cell: CellKpis
    ue: dict[Rnti, UserKpis]


class ErrorBody(_ReplyPart):
    code: ErrorCode
    key: str | None
    message: str


class ErrorReply(_ReplyPart):
    """`ok: false`; sid/seq are null when the request's own could not be read."""

    v: Version
    sid: Sid | None
    seq: Seq | None
    ok: Literal[False]
    error: ErrorBody


def _reply_kind_by(identity_key: str) -> Callable[[Any], str | None]:
    """Tells a peer's replies apart: an error, a ping (it carries the peer's identity under
    `identity_key`), else a window."""
    def kind(data: Any) -> str | None:
        if not isinstance(data, dict):
            return None
        if data.get("ok") is False:
            return "error"
        return "ping" if identity_key in data else "window"
    return kind


Reply = Annotated[
    Annotated[PingReply, Tag("ping")] | Annotated[WindowReply, Tag("window")]
    | Annotated[ErrorReply, Tag("error")],
    Discriminator(_reply_kind_by("vbs")),
]
_REPLY: TypeAdapter[PingReply | WindowReply | ErrorReply] = TypeAdapter(Reply)


class UeKpis(_ReplyPart):
    """What the UE observed over one window (definitions: PROTOCOL.md section 14.4)."""

    rsrp_dbm_mean: float
    rsrp_nof_meas: Count
    dl_bits_ok: Count
    dl_tb: Count
    dl_bler: Fraction
    pusch_tti: Count
    pusch_power_dbm_mean: float
    pusch_power_dbm_max: float
    pucch_tti: Count
    pucch_power_dbm_mean: float
    pathloss_db_mean: float
    ul_power_cap_hits: Count
    ul_buffer_bytes: Count


class UePingReply(_ReplyPart):
    v: Version
    sid: Sid
    seq: Seq
    ok: Literal[True]
    node: VbsIdentity
    applied: UeThresholds


class UeWindowReply(_ReplyPart):
    """The UE's reply to get/set/reset: its cap now in force and the window just closed."""

    v: Version
    sid: Sid
    seq: Seq
    ok: Literal[True]
    applied: UeThresholds
    applied_tti: Count
    window: KpiWindow
    kpis: UeKpis


UeReply = Annotated[
    Annotated[UePingReply, Tag("ping")] | Annotated[UeWindowReply, Tag("window")]
    | Annotated[ErrorReply, Tag("error")],
    Discriminator(_reply_kind_by("node")),
]
_UE_REPLY: TypeAdapter[UePingReply | UeWindowReply | ErrorReply] = TypeAdapter(UeReply)


def encode(model: BaseModel) -> bytes:
    """One frame of UTF-8 JSON."""
    return model.model_dump_json().encode()


def decode_reply(raw: bytes) -> PingReply | WindowReply | ErrorReply:
    """Parse one reply frame from the vBS; raises ProtocolError when it is not an rtctl v1
    reply."""
    return _decode_reply(raw, _REPLY)


def decode_ue_reply(raw: bytes) -> UePingReply | UeWindowReply | ErrorReply:
    """Parse one reply frame from the UE; raises ProtocolError when it is not an rtctl v1 UE
    reply (a vBS's reply is not: it has no `node` and no `kpis`)."""
    return _decode_reply(raw, _UE_REPLY)


def _decode_reply(raw: bytes, adapter: TypeAdapter[Any]) -> Any:
    try:
        return adapter.validate_json(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ProtocolError(
            f"not an rtctl v{PROTOCOL_VERSION} reply: {_key_path(error['loc']) or 'message'}: "
            f"{error['msg']}") from None


# ---- the two peers


PingT = TypeVar("PingT", PingReply, UePingReply)
WindowT = TypeVar("WindowT", WindowReply, UeWindowReply)


@dataclass(frozen=True)
class Peer(Generic[PingT, WindowT]):
    """What a client needs to talk to one kind of rtctl v1 peer, and the replies it gets
    from it; the rest is common."""

    name: str
    """How messages to the operator name it."""
    program: str
    """What runs it, for messages saying what to check."""
    default_endpoint: str
    request: type[Request | UeRequest]
    thresholds: type[ThresholdUpdate | UeThresholdUpdate]
    ping_reply: type[PingT]
    window_reply: type[WindowT]
    decode_reply: Callable[[bytes], Any]


ENB: Peer[PingReply, WindowReply] = Peer(
    "vBS", "srsenb or the emulator", DEFAULT_ENDPOINT, Request, ThresholdUpdate, PingReply,
    WindowReply, decode_reply)
UE: Peer[UePingReply, UeWindowReply] = Peer(
    "UE", "srsue", UE_DEFAULT_ENDPOINT, UeRequest, UeThresholdUpdate, UePingReply,
    UeWindowReply, decode_ue_reply)
