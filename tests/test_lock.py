"""One run per testbed: the second run is refused naming who holds the testbed, since when
and in which run directory; a claim left by a dead run is taken over with a warning; the
claim lives on the vBS host over SSH, or on this machine for a local testbed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from test_e2e import wait_for_rounds
from testbed_yaml import REPO, write_config

import hil.lock
from drivers.ssh import SshHost
from hil.lock import LocalLockFiles, SshLockFiles
from tools.cli import main


@pytest.fixture(params=["local", "ssh"])
def files(request, tmp_path):
    if request.param == "local":
        yield LocalLockFiles(tmp_path / "locks")
        return
    sshd = request.getfixturevalue("sshd")
    host = SshHost("bbu", **sshd.host_params())
    yield SshLockFiles(host)
    host.close()


def age(files, name: str, seconds: float) -> None:
    """Make the claim look untouched for `seconds` (its holder died that long ago)."""
    if isinstance(files, LocalLockFiles):
        path = files.directory / f"{name}.json"
        os.utime(path, (time.time() - seconds, time.time() - seconds))
    else:
        files.host.run(f"touch -d '-{int(seconds)} seconds' {files._path(name)}")


def test_a_second_run_is_refused_naming_the_holder_and_the_claim_goes_with_the_first(files):
    first = hil.lock.TestbedLock(files, "testbed", "bbu", "runs/first")
    first.acquire()
    second = hil.lock.TestbedLock(files, "testbed", "bbu", "runs/second")
    with pytest.raises(hil.lock.TestbedBusyError) as refused:
        second.acquire()
    message = str(refused.value)
    assert "testbed bbu is in use by run runs/first" in message
    assert f"pid {os.getpid()}" in message and "since 20" in message
    first.release()
    second.acquire()  # free again
    second.release()
    assert files.read("testbed") is None


def test_a_claim_left_by_a_dead_run_is_taken_over_with_a_warning(files, caplog):
    dead = hil.lock.TestbedLock(files, "testbed", "bbu", "runs/killed")
    assert files.create("testbed", json.dumps(dead.holder))  # SIGKILLed: never released
    age(files, "testbed", hil.lock.STALE_S + 5)
    taker = hil.lock.TestbedLock(files, "testbed", "bbu", "runs/next")
    with caplog.at_level("WARNING"):
        taker.acquire()
    assert "taking over the claim of run runs/killed" in caplog.text
    assert json.loads(files.read("testbed")[0])["run"] == "runs/next"
    taker.release()


def test_the_holder_keeps_its_claim_fresh(files, monkeypatch):
    monkeypatch.setattr(hil.lock, "HEARTBEAT_S", 0.2)
    lock = hil.lock.TestbedLock(files, "testbed", "bbu", "runs/live")
    lock.acquire()
    age(files, "testbed", 100)
    deadline = time.monotonic() + 10
    while files.read("testbed")[1] > 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert files.read("testbed")[1] <= 5  # touched again: nobody may take it over
    lock.release()


@pytest.mark.e2e
def test_two_runs_on_one_testbed_the_second_is_refused(tmp_path, sshd):
    config = write_config(tmp_path, sshd=sshd, rounds=3000, **{"clock.speedup": 100.0})
    first = subprocess.Popen([sys.executable, "-m", "tools.cli", "run", str(config)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        runs = tmp_path / "runs"
        wait_for_rounds(runs, 1)  # a round recorded: the first run holds the testbed
        assert main(["run", str(config), "--rounds", "10"]) == 1
        held = [json.loads(p.read_text()) for p in runs.glob("*/run.json")]
        refused = next(m for m in held if m.get("exit", {}).get("status") == "failed")
        assert "is in use by run" in refused["exit"]["reason"]
    finally:
        first.terminate()
        first.communicate(timeout=60)
    assert first.returncode in (0, 130)
    with SshHost("check", **sshd.host_params()) as host:  # released at the end
        assert SshLockFiles(host).read("testbed") is None


def test_hil_check_reports_the_testbed_lock(tmp_path, sshd, capsys):
    config = write_config(tmp_path, sshd=sshd)
    assert main(["check", str(config)]) == 0
    assert "testbed lock: testbed bbu (" in " ".join(capsys.readouterr().err.split())  # stderr
    with SshHost("bbu", **sshd.host_params()) as host:
        files = SshLockFiles(host)
        assert files.create("testbed", json.dumps({"run": "runs/elsewhere", "pid": 7}))
        assert main(["check", str(config)]) == 1
        assert "is in use by run runs/elsewhere" in " ".join(capsys.readouterr().err.split())
        files.remove("testbed")
    local = write_config(tmp_path)  # a child emulator on a free port: nothing to share
    main(["check", str(local)])
    assert "none needed" in " ".join(capsys.readouterr().err.split())


def test_a_claim_of_a_process_gone_from_this_machine_is_taken_over_at_once(files, caplog):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    holder = {"run": "runs/killed", "controller": hil.lock.socket.gethostname(),
              "pid": int(gone.stdout), "user": "root", "since_utc": "2026-12-07T00:00:00+00:00"}
    assert files.create("testbed", json.dumps(holder))  # fresh, but its process has ended
    taker = hil.lock.TestbedLock(files, "testbed", "bbu", "runs/next")
    with caplog.at_level("WARNING"):
        taker.acquire()
    assert "taking over the claim of run runs/killed" in caplog.text
    taker.release()
