"""rtctl faults on a live run: replies lost, requests duplicated, replies late.

`hil run` against the emulated vBS process, with a man-in-the-middle on the control link
(real ZMQ sockets both ways) that, by a fixed schedule, drops the vBS's reply, sends the
request to the vBS twice, or holds the reply past the client's timeout and delivers it
afterwards. The specification:

- the run completes, every round recorded, nearly all of them valid (the client resends
  with the same seq and gets the remembered reply);
- nothing is applied twice: a request the vBS receives twice gets byte-identical replies
  (a second execution would carry a later TTI or another KPI window);
- a late reply changes nothing: the thresholds' applied TTI only moves forward, and every
  valid round has its own KPI window.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import zmq
from testbed_yaml import write_config

import hil.testbeds.emulated
from drivers.rtctl.client import RtctlClient
from hil.recorder import read_rounds
from tools.cli import main

pytestmark = pytest.mark.e2e
ROUNDS = 300
SPEEDUP = 20.0  # 50 ms rounds: room for a resend inside a round
TIMEOUT_S = 0.06


class FaultyLink:
    """A ROUTER facing the controller, a fresh REQ per request towards the vBS.

    Request n (counting every request the controller sends, resends included) suffers:
    n % 7 == 3: its reply is dropped; n % 11 == 5: it reaches the vBS twice; n % 13 == 8:
    its reply is delivered 2.5 client timeouts late.
    """

    def __init__(self, vbs_endpoint: str) -> None:
        self.vbs_endpoint = vbs_endpoint
        self.context = zmq.Context.instance()
        self.front = self.context.socket(zmq.ROUTER)
        self.front.linger = 0
        port = self.front.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.faults: Counter[str] = Counter()
        self.duplicate_replies: list[tuple[bytes, bytes]] = []
        self._late: list[tuple[float, list[bytes]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _ask_vbs(self, payload: bytes) -> bytes | None:
        sock = self.context.socket(zmq.REQ)
        sock.linger = 0
        try:
            sock.connect(self.vbs_endpoint)
            sock.send(payload)
            return sock.recv() if sock.poll(2000) else None
        finally:
            sock.close()

    def _serve(self) -> None:
        n = 0
        while not self._stop.is_set():
            now = time.monotonic()
            for due, frames in [x for x in self._late if x[0] <= now]:
                self._late.remove((due, frames))
                self.front.send_multipart(frames)  # to a socket the client has given up
            if not self.front.poll(5):
                continue
            ident, empty, payload = self.front.recv_multipart()
            n += 1
            reply = self._ask_vbs(payload)
            if reply is None:
                continue
            if n % 11 == 5:
                self.faults["duplicated"] += 1
                self.duplicate_replies.append((reply, self._ask_vbs(payload) or b""))
            if n % 7 == 3:
                self.faults["dropped"] += 1
            elif n % 13 == 8:
                self.faults["late"] += 1
                self._late.append((time.monotonic() + 2.5 * TIMEOUT_S, [ident, empty, reply]))
            else:
                self.front.send_multipart([ident, empty, reply])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.front.close()


def test_lost_duplicated_and_late_replies_apply_nothing_twice_and_the_run_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    links: list[FaultyLink] = []

    def through_faulty_link(endpoint: str, **options) -> RtctlClient:
        links.append(FaultyLink(endpoint))
        return RtctlClient(links[-1].endpoint, **options)

    monkeypatch.setattr(hil.testbeds.emulated, "RtctlClient", through_faulty_link)
    config = write_config(tmp_path, rounds=ROUNDS, **{
        "clock.speedup": SPEEDUP, "vbs.timeout_s": TIMEOUT_S, "vbs.retries": 3,
        "agent.name": "random"})
    try:
        assert main(["run", str(config)]) == 0
    finally:
        for link in links:
            link.close()
    (link,) = links
    assert min(link.faults[f] for f in ("dropped", "duplicated", "late")) >= 10, link.faults

    for first, second in link.duplicate_replies:
        assert first == second  # the vBS replayed its reply: the request ran once

    (run_dir,) = (tmp_path / "runs").iterdir()
    rounds = read_rounds(run_dir)
    assert rounds["round"].tolist() == list(range(ROUNDS))
    assert rounds["valid"].mean() >= 0.97, rounds["invalid_reason"].value_counts()
    valid = rounds[rounds["valid"]]
    # A stale reply taken for a fresh one would carry an earlier round's TTI.
    assert pd.Series(valid["applied_tti"]).is_monotonic_increasing
    assert (valid["nof_tti"] >= 250).all()  # a resend may shorten a window, never empty it
