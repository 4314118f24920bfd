"""The controller side of rtctl v1: a Lazy Pirate client (ZeroMQ guide, chapter 4).

A REQ socket that loses its reply is stuck, so on timeout the client closes it, opens a new
one and resends the *same* bytes with the same seq; the vBS's per-session reply memory turns
that resend into a replay, never a second apply.

The same client talks to a UE's rtctl socket (`peer=UE`, PROTOCOL.md section 14): only the
thresholds and the replies differ.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Generic, Self

import zmq

from drivers.rtctl.curve import ClientCurve
from drivers.rtctl.messages import (
    ENB,
    PROTOCOL_VERSION,
    ErrorReply,
    Op,
    Peer,
    PingReply,
    PingT,
    Request,
    ThresholdUpdate,
    UePingReply,
    UeRequest,
    UeThresholdUpdate,
    UeWindowReply,
    WindowReply,
    WindowT,
    encode,
)
from hil.base.errors import ProtocolError, ThresholdError, VbsRejectedError, VbsUnreachableError

log = logging.getLogger(__name__)

_Reply = PingReply | WindowReply | UePingReply | UeWindowReply | ErrorReply


class RtctlClient(Generic[PingT, WindowT]):
    """The engine's `RanControl` over rtctl v1. One session (`sid`); not thread-safe.

    `peer` says who listens at `endpoint` (default: that peer's default endpoint): the vBS
    (`ENB`) or a UE (`UE`); its replies are that peer's. Each call blocks for at most
    `(retries + 1) * timeout_s`.
    """

    def __init__(self, endpoint: str | None = None, *,
                 peer: Peer[PingT, WindowT] = ENB,  # type: ignore[assignment]  # mypy#3737
                 timeout_s: float = 0.5,
                 retries: int = 3, context: zmq.Context | None = None,
                 curve: ClientCurve | None = None) -> None:
        if timeout_s <= 0 or retries < 0:
            raise ValueError(f"need timeout_s > 0 and retries >= 0, got {timeout_s}, {retries}")
        self.peer = peer
        self.endpoint = endpoint if endpoint is not None else peer.default_endpoint
        self.timeout_s = timeout_s
        self.retries = retries
        self.sid = f"hil-{secrets.token_hex(8)}"
        self.last_seq = 0
        self._context = context if context is not None else zmq.Context.instance()
        self._curve = curve  # CURVE keys on a lab network (drivers.rtctl.curve)
        self._socket: zmq.Socket | None = None

    def ping(self) -> PingT:
        """Identity and thresholds in force; leaves the KPI window open."""
        return self._call("ping", self.peer.ping_reply)

    def get(self) -> WindowT:
        """Close the KPI window; thresholds unchanged."""
        return self._call("get", self.peer.window_reply)

    def set(self, thresholds: Mapping[str, Any]) -> WindowT:
        """Change the given thresholds (None uncaps), then close the window.

        Validated here first with the peer's own rules: a bad value raises ThresholdError
        and nothing is sent.
        """
        return self._call("set", self.peer.window_reply,
                          self.peer.thresholds.parse(dict(thresholds)))

    def reset(self) -> WindowT:
        """Restore the peer's configured thresholds, then close the window."""
        return self._call("reset", self.peer.window_reply)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _call(self, op: Op, expected: type[Any],
              thresholds: ThresholdUpdate | UeThresholdUpdate | None = None) -> Any:
        self.last_seq += 1
        request = self.peer.request(v=PROTOCOL_VERSION, sid=self.sid, seq=self.last_seq, op=op,
                                    thresholds=thresholds)
        reply = self._exchange(request)
        if isinstance(reply, ErrorReply):
            raise self._rejection(request, reply)
        if not isinstance(reply, expected):
            raise ProtocolError(f"the {self.peer.name} at {self.endpoint} answered {op} seq "
                                f"{request.seq} with a {type(reply).__name__}, not a "
                                f"{expected.__name__}")
        return reply

    def _exchange(self, request: Request | UeRequest) -> _Reply:
        """Send, wait, and on timeout reopen and resend the same bytes (Lazy Pirate)."""
        raw = encode(request)
        tries = self.retries + 1
        for attempt in range(1, tries + 1):
            socket = self._open_socket()
            try:
                socket.send(raw)  # times out (zmq.Again) when no peer would take it
                reply = self._await_reply(socket, request)
            except zmq.Again:
                reply = None
            except BaseException:  # Ctrl-C or a garbled reply mid-exchange: the REQ socket
                self.close()       # waits for a reply it will never take, so the next call
                raise              # (the defaults restored at exit) opens a new one
            if reply is not None:
                return reply
            log.warning("rtctl: no reply from %s to %s seq %d (try %d of %d)",
                        self.endpoint, request.op, request.seq, attempt, tries)
            self.close()  # a REQ socket without its reply cannot send again
        raise VbsUnreachableError(
            f"no reply from the {self.peer.name} at {self.endpoint} to {request.op} seq "
            f"{request.seq} after {tries} tries of {self.timeout_s:g} s each; check that the "
            f"{self.peer.name} ({self.peer.program}) is running, that its config has "
            "[rtctl] enable = true, and that it listens on this endpoint (host and port)")

    def _open_socket(self) -> zmq.Socket:
        if self._socket is None:
            socket = self._context.socket(zmq.REQ)
            socket.linger = 0
            # A REQ socket with no peer to send to (nothing listens, or a CURVE handshake the
            # vBS refused dropped the connection) would block `send` for ever.
            socket.sndtimeo = max(1, math.ceil(self.timeout_s * 1000))
            if self._curve is not None:
                self._curve.apply(socket)
            try:
                socket.connect(self.endpoint)
            except zmq.ZMQError as exc:
                socket.close()
                raise VbsUnreachableError(
                    f"cannot connect to the {self.peer.name} at {self.endpoint!r}: {exc}; an "
                    f"endpoint looks like {self.peer.default_endpoint}") from None
            self._socket = socket
        return self._socket

    def _await_reply(self, socket: zmq.Socket, request: Request | UeRequest) -> _Reply | None:
        """The reply to `request`, or None when this try timed out.

        A reply for another sid/seq is logged and ignored; waiting goes on until this try's
        deadline (the REQ socket then gets nothing more, so the try times out and resends).
        """
        deadline = time.monotonic() + self.timeout_s
        while (remaining_s := deadline - time.monotonic()) > 0:
            if not socket.poll(math.ceil(remaining_s * 1000), zmq.POLLIN):
                return None
            frames = socket.recv_multipart()
            try:
                if len(frames) != 1:
                    raise ProtocolError(f"a reply is one frame, got {len(frames)}")
                reply = self.peer.decode_reply(frames[0])
            except ProtocolError as exc:
                raise ProtocolError(
                    f"the {self.peer.name} at {self.endpoint} answered {request.op} seq "
                    f"{request.seq} with something else than rtctl v{PROTOCOL_VERSION}: {exc}; "
                    f"check that the {self.peer.name} patch and the controller speak the same "
                    "protocol version and that this endpoint is a "
                    f"{self.peer.name}'s") from None
            if _answers(reply, request):
                return reply
            log.warning("rtctl: ignoring a reply for sid %s seq %s from %s while waiting for "
                        "sid %s seq %d", reply.sid, reply.seq, self.endpoint, request.sid,
                        request.seq)
        return None

    def _rejection(self, request: Request | UeRequest,
                   reply: ErrorReply) -> ThresholdError | VbsRejectedError:
        error = reply.error
        if error.code == "bad_threshold":
            return ThresholdError(
                error.key or "thresholds",
                f"{error.message} (refused by the {self.peer.name} at {self.endpoint}; the "
                "previous thresholds stay in force)")
        where = f" at {error.key}" if error.key else ""
        return VbsRejectedError(
            f"the {self.peer.name} at {self.endpoint} rejected {request.op} seq {request.seq}: "
            f"{error.code}{where}: {error.message}")


def _answers(reply: _Reply, request: Request | UeRequest) -> bool:
    """True for the reply to `request`. An error reply with null sid and seq (the vBS could
    not read ours) still answers it: a REQ socket only ever receives replies to its own
    requests; sid/seq only guard against a misbehaving peer."""
    if isinstance(reply, ErrorReply) and reply.sid is None and reply.seq is None:
        return True
    return reply.sid == request.sid and reply.seq == request.seq
