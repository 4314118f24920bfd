"""The vBS side of rtctl v1: a REP socket in front of a `VbsBackend`.

The emulated vBS runs this server; the srsENB patch re-implements the same logic in C++.
`handle()` is the whole protocol (validation, idempotency, window closing) as a pure
bytes -> bytes function, so it is tested without sockets; `serve()` only moves frames.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

import zmq

from drivers.rtctl.messages import (
    PROTOCOL_VERSION,
    CellKpis,
    ErrorBody,
    ErrorCode,
    ErrorReply,
    KpiWindow,
    PingReply,
    Request,
    RequestError,
    Thresholds,
    UserKpis,
    VbsIdentity,
    WindowReply,
    decode_request,
    encode,
)
from hil.base.errors import HilError

log = logging.getLogger(__name__)

REPLIES_PER_SID = 16
"""Replies remembered per session: a resend of any of them gets the same bytes back."""
MAX_SIDS = 8
"""Sessions remembered; the least recently used one is forgotten first."""


class VbsBackend(Protocol):
    """What the server needs from a base station; all calls come from the serving thread."""

    def identity(self) -> dict:
        """name, version, boot_id, uptime_s, tti (the server adds `protocol`)."""

    def thresholds(self) -> Thresholds:
        """All thresholds in force now."""

    def apply(self, thresholds: Thresholds) -> int:
        """Put the full (already merged and validated) state in force; returns its TTI."""

    def defaults(self) -> Thresholds:
        """The thresholds the vBS was configured with; `reset` restores them."""

    def close_window(self) -> tuple[KpiWindow, CellKpis, dict[int, UserKpis]]:
        """End the KPI window open since the last close, start the next one, return it."""


@dataclass
class _Session:
    highest_seq: int = 0
    replies: OrderedDict[int, bytes] = field(default_factory=OrderedDict)


class RtctlServer:
    """Answers rtctl requests for one backend. Not thread-safe: serve from one thread."""

    def __init__(self, endpoint: str, backend: VbsBackend, *,
                 context: zmq.Context | None = None) -> None:
        self.endpoint = endpoint
        self._backend = backend
        self._context = context if context is not None else zmq.Context.instance()
        self._socket: zmq.Socket | None = None
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._applied_tti = 0  # the configured thresholds hold from the cell's first TTI

    def bind(self) -> str:
        """Bind the REP socket; returns the endpoint bound (a `:*` port resolved).

        Call it from the thread that will serve, or before starting that thread.
        """
        socket = self._context.socket(zmq.REP)
        socket.linger = 0
        try:
            socket.bind(self.endpoint)
        except zmq.ZMQError as exc:
            socket.close()
            raise HilError(
                f"rtctl: cannot bind {self.endpoint}: {exc}; is another vBS or emulator "
                "using that port? Choose a free one in the [rtctl] endpoint setting") from None
        self._socket = socket
        self.endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
        return self.endpoint

    def serve(self, stop: threading.Event, poll_ms: int = 100) -> None:
        """Answer requests until `stop` is set (checked every `poll_ms`); binds if needed."""
        if self._socket is None:
            self.bind()
        socket = self._socket
        assert socket is not None
        while not stop.is_set():
            if not socket.poll(poll_ms, zmq.POLLIN):
                continue
            frames = socket.recv_multipart()
            if len(frames) == 1:
                socket.send(self.handle(frames[0]))
            else:
                socket.send(_error("bad_request", None,
                                   f"a request is one frame, got {len(frames)}", None, None))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def handle(self, raw: bytes) -> bytes:
        """One request frame in, one reply frame out; never raises.

        Order: validate (refusals change nothing and are not remembered) -> replay a
        remembered seq byte for byte -> refuse a forgotten one -> execute and remember.
        """
        try:
            request = decode_request(raw)
        except RequestError as exc:
            return _error(exc.code, exc.key, exc.message, exc.sid, exc.seq)
        session = self._session(request.sid)
        remembered = session.replies.get(request.seq)
        if remembered is not None:
            return remembered
        if request.seq <= session.highest_seq:
            return _error(
                "stale_seq", "seq",
                f"seq {request.seq} is not above {session.highest_seq}, the highest seen for "
                f"sid {request.sid}, and its reply is no longer remembered (only the last "
                f"{REPLIES_PER_SID} are); send a new, higher seq", request.sid, request.seq)
        reply = encode(self._execute(request))
        session.highest_seq = request.seq
        session.replies[request.seq] = reply
        if len(session.replies) > REPLIES_PER_SID:
            session.replies.popitem(last=False)
        return reply

    def _session(self, sid: str) -> _Session:
        session = self._sessions.get(sid)
        if session is None:
            session = self._sessions[sid] = _Session()
            if len(self._sessions) > MAX_SIDS:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(sid)
        return session

    def _execute(self, request: Request) -> PingReply | WindowReply | ErrorReply:
        """Run a valid, new request. A backend failure becomes an `internal` error reply,
        remembered like any reply, so a resend never applies a half-failed request again."""
        ids = {"v": PROTOCOL_VERSION, "sid": request.sid, "seq": request.seq}
        backend = self._backend
        try:
            if request.op == "ping":
                identity = VbsIdentity.model_validate(
                    {**backend.identity(), "protocol": PROTOCOL_VERSION})
                return PingReply(**ids, ok=True, vbs=identity, applied=backend.thresholds())
            if request.op == "set":
                assert request.thresholds is not None  # the Request model guarantees it
                self._applied_tti = backend.apply(backend.thresholds().merged(request.thresholds))
            elif request.op == "reset":
                self._applied_tti = backend.apply(backend.defaults())
            window, cell, ue = backend.close_window()
            return WindowReply(**ids, ok=True, applied=backend.thresholds(),
                               applied_tti=self._applied_tti, window=window, cell=cell, ue=ue)
        except Exception as exc:  # the REP socket must answer whatever the backend does
            log.exception("rtctl: %s seq %s from %s failed in the backend",
                          request.op, request.seq, request.sid)
            return ErrorReply(**ids, ok=False, error=ErrorBody(
                code="internal", key=None, message=f"{type(exc).__name__}: {exc}"))


def _error(code: ErrorCode, key: str | None, message: str, sid: str | None,
           seq: int | None) -> bytes:
    return encode(ErrorReply(v=PROTOCOL_VERSION, sid=sid, seq=seq, ok=False,
                             error=ErrorBody(code=code, key=key, message=message)))
