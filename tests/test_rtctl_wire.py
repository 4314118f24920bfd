"""rtctl v1 over real ZeroMQ sockets on 127.0.0.1: idempotency, Lazy Pirate retries, errors.

A `RecordingBackend` counts every apply/close_window, so "applied once" is observable. Where a
test needs a vBS that drops or alters replies (which a REP socket cannot), a `ScriptedVbs`
answers from a ROUTER socket, still through `RtctlServer.handle`.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from drivers.rtctl.client import RtctlClient
from drivers.rtctl.messages import (
    CapCounters,
    CellKpis,
    ErrorBody,
    ErrorReply,
    KpiWindow,
    Request,
    Thresholds,
    ThresholdUpdate,
    UserKpis,
    decode_reply,
    encode,
)
from drivers.rtctl.server import MAX_SIDS, REPLIES_PER_SID, RtctlServer
from hil.base.errors import ThresholdError, VbsRejectedError, VbsUnreachableError

TIMEOUT_S = 2.0  # generous: only a test that expects a timeout waits for it


class RecordingBackend:
    """A vBS whose TTI advances 1000 per window; records what the server asked of it."""

    def __init__(self) -> None:
        self.state = Thresholds(dl_max_mcs=20)
        self.default = Thresholds(dl_max_mcs=20)
        self.tti = 1000
        self.applied: list[Thresholds] = []
        self.tti_of_last_apply = 0
        self.windows_closed = 0

    def identity(self) -> dict:
        return {"name": "fake", "version": "0.0", "boot_id": "boot-1", "uptime_s": 1.0,
                "tti": self.tti}

    def thresholds(self) -> Thresholds:
        return self.state

    def defaults(self) -> Thresholds:
        return self.default

    def apply(self, thresholds: Thresholds) -> int:
        self.applied.append(thresholds)
        self.state = thresholds
        self.tti_of_last_apply = self.tti
        return self.tti

    def close_window(self) -> tuple[KpiWindow, CellKpis, dict[int, UserKpis]]:
        self.windows_closed += 1
        start, self.tti = self.tti, self.tti + 1000
        zero = CapCounters(dl_mcs=0, dl_prb=0, ul_mcs=0, ul_prb=0)
        numbers = {k: 0 for k, field in CellKpis.model_fields.items()
                   if field.annotation is not CapCounters}
        cell = CellKpis(**{**numbers, "dl_bits_acked": self.windows_closed},
                        cap_hits=zero, violations=zero)
        return KpiWindow(tti_start=start, tti_end=self.tti, nof_tti=1000, wall_s=1.0), cell, {}


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def backend() -> RecordingBackend:
    return RecordingBackend()


@pytest.fixture
def server(ctx: zmq.Context, backend: RecordingBackend) -> Iterator[RtctlServer]:
    """An RtctlServer on a free loopback port, serving from its own thread."""
    rtctl = RtctlServer("tcp://127.0.0.1:*", backend, context=ctx)
    rtctl.bind()
    stop = threading.Event()
    thread = threading.Thread(target=rtctl.serve, args=(stop, 10), daemon=True)
    thread.start()
    yield rtctl
    stop.set()
    thread.join(5)
    rtctl.close()


def exchange(ctx: zmq.Context, endpoint: str, raw: bytes) -> bytes:
    """One raw request/reply on a plain REQ socket, bypassing the client's own checks."""
    req = ctx.socket(zmq.REQ)
    req.linger = 0
    req.connect(endpoint)
    try:
        req.send(raw)
        assert req.poll(int(TIMEOUT_S * 1000)), "no reply from the test server"
        return req.recv()
    finally:
        req.close()


class ScriptedVbs:
    """A ROUTER socket standing in for the vBS; `respond(n, raw)` returns the n-th reply
    (n from 1) or None to drop it. Records every request frame it receives."""

    def __init__(self, ctx: zmq.Context, respond: Callable[[int, bytes], bytes | None]) -> None:
        self._router = ctx.socket(zmq.ROUTER)
        self._router.linger = 0
        self._router.bind("tcp://127.0.0.1:*")
        self.endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.requests: list[bytes] = []
        self._respond = respond
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._router.poll(10):
                peer, empty, raw = self._router.recv_multipart()
                self.requests.append(raw)
                reply = self._respond(len(self.requests), raw)
                if reply is not None:
                    self._router.send_multipart([peer, empty, reply])
        self._router.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def scripted(ctx: zmq.Context) -> Iterator[Callable[..., ScriptedVbs]]:
    started: list[ScriptedVbs] = []

    def start(respond: Callable[[int, bytes], bytes | None]) -> ScriptedVbs:
        started.append(ScriptedVbs(ctx, respond))
        return started[-1]

    yield start
    for vbs in started:
        vbs.stop()


def free_tcp_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def set_bytes(sid: str, seq: int, thresholds: dict[str, Any]) -> bytes:
    return json.dumps({"v": 1, "sid": sid, "seq": seq, "op": "set",
                       "thresholds": thresholds}).encode()


# ---- the vBS side: idempotency and atomicity


def test_set_applies_once_and_a_resend_of_the_same_seq_gets_the_identical_reply(
        ctx: zmq.Context, server: RtctlServer, backend: RecordingBackend) -> None:
    raw = set_bytes("ctl-a", 1, {"dl_max_mcs": 10, "ul_prb_ratio": 0.5})
    first = exchange(ctx, server.endpoint, raw)
    again = exchange(ctx, server.endpoint, raw)
    assert again == first
    assert backend.applied == [Thresholds(dl_max_mcs=10, ul_prb_ratio=0.5)]
    assert backend.windows_closed == 1
    reply = decode_reply(first)
    assert reply.ok and reply.seq == 1
    assert reply.applied == Thresholds(dl_max_mcs=10, ul_prb_ratio=0.5)


def test_a_forgotten_lower_seq_is_refused_as_stale_and_closes_no_window(
        ctx: zmq.Context, server: RtctlServer, backend: RecordingBackend) -> None:
    with RtctlClient(server.endpoint, timeout_s=TIMEOUT_S, context=ctx) as client:
        for _ in range(REPLIES_PER_SID + 1):
            client.get()
        sid = client.sid
    closed = backend.windows_closed
    stale = Request(v=1, sid=sid, seq=1, op="get")
    reply = decode_reply(exchange(ctx, server.endpoint, encode(stale)))
    assert isinstance(reply, ErrorReply)
    assert (reply.error.code, reply.sid, reply.seq) == ("stale_seq", sid, 1)
    remembered = decode_reply(exchange(ctx, server.endpoint,
                                       encode(Request(v=1, sid=sid, seq=2, op="get"))))
    assert remembered.ok and remembered.seq == 2
    assert backend.windows_closed == closed


def test_an_out_of_range_threshold_leaves_the_previous_thresholds_in_force(
        ctx: zmq.Context, server: RtctlServer, backend: RecordingBackend) -> None:
    with RtctlClient(server.endpoint, timeout_s=TIMEOUT_S, context=ctx) as client:
        client.set({"dl_max_mcs": 10})
        refused = decode_reply(exchange(
            ctx, server.endpoint, set_bytes(client.sid, 99, {"dl_max_mcs": 5, "ul_max_mcs": 29})))
        after = client.get()
    assert isinstance(refused, ErrorReply)
    assert (refused.error.code, refused.error.key) == ("bad_threshold", "thresholds.ul_max_mcs")
    assert backend.applied == [Thresholds(dl_max_mcs=10)]
    assert after.applied == Thresholds(dl_max_mcs=10)


def test_reset_restores_the_configured_defaults(ctx: zmq.Context, server: RtctlServer,
                                                backend: RecordingBackend) -> None:
    with RtctlClient(server.endpoint, timeout_s=TIMEOUT_S, context=ctx) as client:
        client.set({"dl_max_mcs": 3, "dl_gain_db": -10})
        reply = client.reset()
    assert reply.applied == backend.default
    assert backend.applied[-1] == backend.default


def test_each_window_closing_request_returns_the_window_since_the_previous_one(
        ctx: zmq.Context, server: RtctlServer) -> None:
    with RtctlClient(server.endpoint, timeout_s=TIMEOUT_S, context=ctx) as client:
        first, second = client.get(), client.set({"ul_max_mcs": 9})
        ping, third = client.ping(), client.get()
    assert second.window.tti_start == first.window.tti_end
    assert (first.cell.dl_bits_acked, second.cell.dl_bits_acked) == (1, 2)
    assert ping.vbs.protocol == 1 and ping.applied.ul_max_mcs == 9
    assert third.cell.dl_bits_acked == 3  # ping closed no window


def test_applied_tti_is_the_tti_of_the_last_apply_until_the_next_one(
        ctx: zmq.Context, server: RtctlServer, backend: RecordingBackend) -> None:
    with RtctlClient(server.endpoint, timeout_s=TIMEOUT_S, context=ctx) as client:
        client.get()
        applied = client.set({"ul_max_mcs": 9})
        tti_of_apply = backend.tti_of_last_apply
        later = client.get()
    assert later.window.tti_start > tti_of_apply
    assert applied.applied_tti == later.applied_tti == tti_of_apply


def test_the_least_recently_used_session_is_forgotten_beyond_the_limit(
        backend: RecordingBackend) -> None:
    rtctl = RtctlServer("tcp://127.0.0.1:*", backend)  # handle() needs no socket
    get = {sid: encode(Request(v=1, sid=sid, seq=5, op="get"))
           for sid in [f"s{i}" for i in range(MAX_SIDS + 1)]}
    first = rtctl.handle(get["s0"])
    assert rtctl.handle(get["s0"]) == first  # remembered
    for sid in list(get)[1:]:
        rtctl.handle(get[sid])
    closed = backend.windows_closed
    assert rtctl.handle(get["s0"]) != first  # s0 forgotten: executed again, a new window
    assert backend.windows_closed == closed + 1


def test_a_backend_failure_is_an_internal_error_reply_and_is_not_retried(
        backend: RecordingBackend) -> None:
    def broken(thresholds: Thresholds) -> int:
        backend.applied.append(thresholds)
        raise RuntimeError("scheduler gone")

    backend.apply = broken  # type: ignore[method-assign]
    rtctl = RtctlServer("tcp://127.0.0.1:*", backend)
    raw = set_bytes("ctl-a", 1, {"dl_max_mcs": 4})
    reply = decode_reply(rtctl.handle(raw))
    assert isinstance(reply, ErrorReply)
    assert reply.error.code == "internal" and "scheduler gone" in reply.error.message
    rtctl.handle(raw)
    assert len(backend.applied) == 1


# ---- the client side: Lazy Pirate


def test_the_client_retries_after_a_dropped_reply_and_the_set_is_applied_once(
        ctx: zmq.Context, backend: RecordingBackend,
        scripted: Callable[..., ScriptedVbs]) -> None:
    rtctl = RtctlServer("unused", backend)

    def lose_the_first_reply(n: int, raw: bytes) -> bytes | None:
        reply = rtctl.handle(raw)  # the first request is applied, only its reply is lost
        return None if n == 1 else reply

    vbs = scripted(lose_the_first_reply)
    with RtctlClient(vbs.endpoint, timeout_s=0.3, retries=2, context=ctx) as client:
        reply = client.set({"dl_prb_ratio": 0.2})
    assert len(vbs.requests) == 2
    assert vbs.requests[0] == vbs.requests[1]
    assert reply.seq == client.last_seq == 1
    assert backend.applied == [Thresholds(dl_max_mcs=20, dl_prb_ratio=0.2)]
    assert backend.windows_closed == 1


def test_a_request_with_no_peer_to_take_it_times_out_instead_of_blocking() -> None:
    """A REQ socket with no connected peer (nothing listens and, as here, the socket only
    queues to completed connections; or a CURVE handshake the vBS refused dropped the
    connection, as seen under load in CI) blocks `send` for ever unless it has a timeout."""
    context = zmq.Context()
    context.setsockopt(zmq.IMMEDIATE, 1)  # no completed connection: no pipe to send on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # a port nothing listens on once the probe closes
    try:
        with RtctlClient(f"tcp://127.0.0.1:{port}", timeout_s=0.2, retries=1,
                         context=context) as client, pytest.raises(VbsUnreachableError):
            client.ping()
    finally:
        context.term()


def test_an_exchange_cut_short_by_ctrl_c_leaves_the_client_able_to_restore_defaults(
        ctx: zmq.Context, backend: RecordingBackend, scripted: Callable[..., ScriptedVbs],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyboardInterrupt while a reply is awaited leaves a REQ socket that can never send
    again; the next call (the `reset` of the exit path) must still go through."""
    rtctl = RtctlServer("unused", backend)
    vbs = scripted(lambda n, raw: rtctl.handle(raw))
    with RtctlClient(vbs.endpoint, timeout_s=0.3, retries=0, context=ctx) as client:
        await_reply = RtctlClient._await_reply

        def interrupted(self: RtctlClient, *args: Any) -> Any:
            monkeypatch.setattr(RtctlClient, "_await_reply", await_reply)
            raise KeyboardInterrupt

        monkeypatch.setattr(RtctlClient, "_await_reply", interrupted)
        with pytest.raises(KeyboardInterrupt):
            client.get()
        assert client.reset().seq == client.last_seq


@pytest.mark.parametrize("wrong", [{"seq": 999}, {"sid": "someone-else"}])
def test_a_reply_for_another_seq_or_sid_is_ignored(
        ctx: zmq.Context, backend: RecordingBackend, scripted: Callable[..., ScriptedVbs],
        wrong: dict[str, Any]) -> None:
    rtctl = RtctlServer("unused", backend)

    def misaddressed_first(n: int, raw: bytes) -> bytes:
        reply = rtctl.handle(raw)
        return encode(decode_reply(reply).model_copy(update=wrong)) if n == 1 else reply

    vbs = scripted(misaddressed_first)
    with RtctlClient(vbs.endpoint, timeout_s=0.3, retries=2, context=ctx) as client:
        reply = client.get()
    assert (reply.sid, reply.seq) == (client.sid, 1)
    assert len(vbs.requests) == 2 and backend.windows_closed == 1


def test_the_client_names_the_endpoint_when_nothing_listens(ctx: zmq.Context) -> None:
    endpoint = free_tcp_endpoint()
    with (RtctlClient(endpoint, timeout_s=0.05, retries=1, context=ctx) as client,
          pytest.raises(VbsUnreachableError) as info):
        client.ping()
    message = str(info.value)
    assert endpoint in message and "2 tries" in message and "enable = true" in message


def test_invalid_thresholds_raise_before_anything_is_sent(
        ctx: zmq.Context, scripted: Callable[..., ScriptedVbs]) -> None:
    vbs = scripted(lambda n, raw: None)
    with (RtctlClient(vbs.endpoint, timeout_s=0.3, context=ctx) as client,
          pytest.raises(ThresholdError) as info):
        client.set({"ue": {70: {"dl_max_prb": 200}}})
    assert client.last_seq == 0
    assert info.value.key == "thresholds.ue.70.dl_max_prb"
    assert vbs.requests == []


def error_reply(code: str, key: str | None) -> Callable[[int, bytes], bytes]:
    def respond(n: int, raw: bytes) -> bytes:
        request = json.loads(raw)
        return encode(ErrorReply(v=1, sid=request["sid"], seq=request["seq"], ok=False,
                                 error=ErrorBody(code=code, key=key, message="refused here")))
    return respond


def test_a_bad_threshold_reply_raises_threshold_error_with_the_vbs_key(
        ctx: zmq.Context, scripted: Callable[..., ScriptedVbs]) -> None:
    vbs = scripted(error_reply("bad_threshold", "thresholds.dl_gain_db"))
    with (RtctlClient(vbs.endpoint, timeout_s=TIMEOUT_S, context=ctx) as client,
          pytest.raises(ThresholdError) as info):
        client.set({"dl_gain_db": -3})
    assert info.value.key == "thresholds.dl_gain_db"
    assert "refused here" in str(info.value)


def test_other_refusals_raise_vbs_rejected_error_with_code_and_message(
        ctx: zmq.Context, scripted: Callable[..., ScriptedVbs]) -> None:
    vbs = scripted(error_reply("internal", None))
    with (RtctlClient(vbs.endpoint, timeout_s=TIMEOUT_S, context=ctx) as client,
          pytest.raises(VbsRejectedError) as info):
        client.get()
    assert "internal" in str(info.value) and "refused here" in str(info.value)
    assert vbs.endpoint in str(info.value)


def test_thresholds_validated_by_the_client_are_the_ones_sent(
        ctx: zmq.Context, scripted: Callable[..., ScriptedVbs]) -> None:
    vbs = scripted(error_reply("internal", None))
    with (RtctlClient(vbs.endpoint, timeout_s=TIMEOUT_S, context=ctx) as client,
          pytest.raises(VbsRejectedError)):
        client.set({"dl_max_mcs": None, "ul_prb_ratio": 1})
    sent = json.loads(vbs.requests[0])
    assert sent["thresholds"] == {"dl_max_mcs": None, "ul_prb_ratio": 1.0}
    assert ThresholdUpdate.parse(sent["thresholds"]).model_fields_set == {"dl_max_mcs",
                                                                          "ul_prb_ratio"}
