"""SshHost against a real OpenSSH sshd on 127.0.0.1 (tests/sshd_fixture.py).

The server runs on this machine, so the tests check what happened on the "host" directly
(files, /proc, namespaces) rather than trusting what the driver reports.
"""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from shlex import quote

import psutil
import pytest
from prerequisites import missing
from sshd_fixture import Sshd
from waiting import wait_until

from drivers.protocols import CommandResult, ProcessHost
from drivers.ssh import (
    AuthError,
    CommandError,
    CommandTimeoutError,
    ConnectionLostError,
    HostKeyError,
    SshError,
    SshHost,
)
from drivers.ssh.host import _home_relative

PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>


@pytest.fixture
def host(sshd: Sshd) -> Iterator[SshHost]:
    with SshHost("bbu", **sshd.host_params()) as ssh_host:
        yield ssh_host


def alive(pid: int) -> bool:
    """Whether `pid` runs here (a zombie has exited; it only waits to be reaped)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def ssh_keygen(path: Path, passphrase: str = "") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)],
                   check=True)
    return path


def test_ssh_host_is_a_process_host(host: SshHost) -> None:
    def needs_a_process_host(process_host: ProcessHost) -> str:
        return process_host.name

    assert needs_a_process_host(host) == "bbu"


# -- run -------------------------------------------------------------------------------------

def test_run_returns_stdout_stderr_and_exit_code(host: SshHost) -> None:
    command = "printf 'out\\n'; printf 'err\\n' >&2; exit 3"
    assert host.run(command, check=False) == CommandResult(command, 3, "out\n", "err\n")


def test_run_with_check_raises_naming_host_command_and_stderr(host: SshHost,
                                                              sshd: Sshd) -> None:
    with pytest.raises(CommandError) as info:
        host.run("echo 'disk full' >&2; exit 7")
    message = str(info.value)
    assert f"127.0.0.1:{sshd.port}" in message and "bbu" in message
    assert "echo 'disk full' >&2; exit 7" in message
    assert "exit code 7" in message and "disk full" in message
    assert info.value.result.exit_code == 7


def test_run_collects_large_stdout_and_stderr_in_full(host: SshHost) -> None:
    result = host.run("yes out | head -n 100000; yes err | head -n 100000 >&2")
    assert result.stdout == "out\n" * 100_000
    assert result.stderr == "err\n" * 100_000


def test_run_gives_the_command_an_empty_stdin_instead_of_hanging(host: SshHost) -> None:
    assert host.run("cat", timeout_s=5).stdout == ""


def test_run_timeout_raises_and_kills_the_command_with_its_children(
        host: SshHost, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    with pytest.raises(CommandTimeoutError, match="within 0.5 s on host bbu"):
        host.run(f"sleep 30 & echo $$ $! > {pids}; wait", timeout_s=0.5)
    shell_pid, child_pid = map(int, pids.read_text().split())
    wait_until(lambda: not alive(shell_pid) and not alive(child_pid), "both processes gone")
    assert host.run("echo still usable").stdout == "still usable\n"


# -- put_text --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [0o600, 0o755])
def test_put_text_creates_parent_directories_and_sets_the_mode(host: SshHost, tmp_path: Path,
                                                               mode: int) -> None:
    target = tmp_path / "etc" / "srsran" / "enb.conf"
    text = "[enb]\nn_prb = 50\n# µ, ü and a tab:\t.\n"
    host.put_text(text, str(target), mode=mode)
    assert target.read_text(encoding="utf-8") == text
    assert target.stat().st_mode & 0o777 == mode


def test_put_text_replaces_the_file_by_rename_and_leaves_no_temporary_file(
        host: SshHost, tmp_path: Path) -> None:
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    target = config_dir / "enb.conf"
    target.write_text("old\n")
    with target.open() as reader_of_the_old_file:
        host.put_text("new\n", str(target))
        # a reader that opened the old file keeps reading it whole: it was replaced, not
        # truncated and rewritten under the reader's feet
        assert reader_of_the_old_file.read() == "old\n"
    assert target.read_text() == "new\n"
    assert os.listdir(config_dir) == ["enb.conf"]


def test_put_text_handles_spaces_and_quotes_in_paths(host: SshHost, tmp_path: Path) -> None:
    target = tmp_path / "it's a dir" / "my $HOME file.conf"
    host.put_text("x = 1\n", str(target))
    assert target.read_text() == "x = 1\n"


def test_put_text_that_cannot_write_names_the_host(host: SshHost, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory\n")
    with pytest.raises(SshError, match="host bbu"):
        host.put_text("x\n", str(tmp_path / "a-file" / "enb.conf"))


def test_home_relative_paths_start_in_the_login_directory() -> None:
    assert _home_relative("~/.vbs-hil/bbu") == ".vbs-hil/bbu"
    assert _home_relative("~") == "."
    assert _home_relative("/etc/srsran/enb.conf") == "/etc/srsran/enb.conf"


# -- start / is_running / tail / stop --------------------------------------------------------

def test_start_runs_detached_logs_output_and_stop_ends_it(host: SshHost) -> None:
    pid = host.start("ticker", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.05; done")
    assert host.is_running("ticker")
    assert os.getsid(pid) == pid  # its own session: closing SSH does not hang it up
    wait_until(lambda: "tick 3" in host.tail("ticker"), "tick 3 logged")
    last_two = host.tail("ticker", 2).splitlines()
    assert len(last_two) == 2 and all(line.startswith("tick ") for line in last_two)

    host.stop("ticker", timeout_s=2)
    assert not host.is_running("ticker")
    assert not alive(pid)


@pytest.mark.parametrize("command", ["sleep 30", "sleep '30'  # quoted argument, comment"])
def test_the_pid_of_a_single_program_is_the_program_itself(host: SshHost,
                                                             command: str) -> None:
    """What host metrics measure must be the program, not a shell around it."""
    pid = host.start("measured", command)
    try:
        assert psutil.Process(pid).name() == "sleep"
    finally:
        host.stop("measured")
    assert not alive(pid)


@pytest.mark.parametrize(("command", "output"), [
    ("echo one; echo two", "one\ntwo\n"),
    ("echo piped | tr a-z A-Z", "PIPED\n"),
    ("echo $(echo substituted)", "substituted\n"),
    ("GREETING=assigned sh -c 'echo $GREETING'", "assigned\n"),
    ("for i in 1 2; do echo loop $i; done", "loop 1\nloop 2\n"),
])
def test_a_command_that_needs_a_shell_runs_as_written(host: SshHost, command: str,
                                                      output: str) -> None:
    host.start("shelled", command)
    wait_until(lambda: not host.is_running("shelled"), "shelled exited")
    assert host.tail("shelled") == output


def test_start_passes_environment_values_literally(host: SshHost) -> None:
    value = "it's $(echo injected) `echo this` $HOME"
    host.start("env-echo", 'printf "%s\\n" "$GREETING"', env={"GREETING": value})
    wait_until(lambda: not host.is_running("env-echo"), "env-echo exited")
    assert host.tail("env-echo") == value + "\n"


def test_a_process_that_crashes_is_not_running_and_keeps_its_log(host: SshHost) -> None:
    pid = host.start("crasher", "echo about to fail; exit 3")
    wait_until(lambda: not host.is_running("crasher"), "crasher exited")
    assert not alive(pid)
    assert "about to fail" in host.tail("crasher")
    host.stop("crasher")  # nothing to stop: no error


def test_a_dead_process_left_as_a_zombie_is_not_running(host: SshHost) -> None:
    """Where PID 1 does not reap orphans (a container without an init), a dead process
    lingers as a zombie: its PID still exists, so `kill -0` alone would call it running.

    This test process becomes the orphan's "init" (a child subreaper) and does not reap it.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        missing(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(ctypes.get_errno())}")
    pid = None
    try:
        pid = host.start("zombie", "sleep 0.3; exit 3")
        wait_until(lambda: psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, "a zombie")
        assert not host.is_running("zombie")
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        if pid is not None:
            os.waitpid(pid, 0)


def test_restarting_keeps_the_previous_log_beside_the_new_one(host: SshHost,
                                                              sshd: Sshd) -> None:
    host.start("once", "echo first run")
    wait_until(lambda: not host.is_running("once"), "once exited")
    host.start("once", "echo second run")
    wait_until(lambda: not host.is_running("once"), "once exited")
    assert host.tail("once") == "second run\n"
    assert (sshd.root / "state" / "once.log.1").read_text() == "first run\n"


def test_a_recycled_pid_is_not_mistaken_for_our_process(host: SshHost, sshd: Sshd) -> None:
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    time.sleep(0.05)  # so the two start times differ (they have a 10 ms resolution)
    try:
        pid = host.start("victim", "sleep 30")
        pid_file = sshd.root / "state" / "victim.pid"
        recorded_pid, start_ticks = pid_file.read_text().split()
        assert int(recorded_pid) == pid and host.is_running("victim")

        # as if `victim` had died and the kernel had given its PID to `stranger`
        pid_file.write_text(f"{stranger.pid} {start_ticks}\n")
        assert not host.is_running("victim")
        host.stop("victim", timeout_s=0.5)
        assert stranger.poll() is None, "stop() signalled a process that is not ours"
    finally:
        stranger.kill()
        stranger.wait()
        os.killpg(pid, 9)


def test_start_refuses_a_second_process_under_a_running_name(host: SshHost) -> None:
    pid = host.start("single", "sleep 30")
    with pytest.raises(SshError, match=f"single is already running as PID {pid} on host bbu"):
        host.start("single", "sleep 30")
    host.stop("single")


def test_stop_ends_the_children_of_a_shell_command_too(host: SshHost) -> None:
    pid = host.start("family", "sleep 30 & echo child $!; wait")
    wait_until(lambda: "child" in host.tail("family"), "the child logged")
    child_pid = int(host.tail("family").split()[1])
    assert alive(child_pid)
    host.stop("family", timeout_s=2)
    assert not alive(pid) and not alive(child_pid)


def test_stop_returns_once_the_children_of_a_shell_have_finished_what_they_do_at_sigterm(
        host: SshHost, tmp_path: Path) -> None:
    """A shell ends at SIGTERM at once; a child of it may still be writing its output (as
    iperf3 clients write their reports), which must be whole once `stop` returns."""
    report = tmp_path / "report.txt"
    child = ("import signal, sys, time\n"
             "def finish(*_):\n"
             "    time.sleep(0.5)\n"
             f"    open({str(report)!r}, 'w').write('whole')\n"
             "    sys.exit(0)\n"
             "signal.signal(signal.SIGTERM, finish)\n"
             "print('ready', flush=True)\n"
             "time.sleep(30)\n")
    host.start("writer", f"{sys.executable} -c {quote(child)} & wait")
    wait_until(lambda: "ready" in host.tail("writer"), "the child ready")
    host.stop("writer", timeout_s=5)
    assert report.read_text() == "whole"


def test_stop_kills_a_process_that_ignores_sigterm(host: SshHost,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    pid = host.start("stubborn", "trap '' TERM; echo ready; while :; do sleep 0.05; done")
    wait_until(lambda: "ready" in host.tail("stubborn"), "stubborn ready")
    with caplog.at_level(logging.WARNING):
        host.stop("stubborn", timeout_s=0.3)
    assert not alive(pid)
    assert "stubborn" in caplog.text and "killed" in caplog.text


def test_kill_ends_the_whole_group_at_once_as_a_crash_would(host: SshHost) -> None:
    pid = host.start("crashing", "trap 'echo clean exit' TERM; sleep 30 & echo child $!; wait")
    wait_until(lambda: "child" in host.tail("crashing"), "the child logged")
    child_pid = int(host.tail("crashing").split()[1])
    host.kill("crashing")
    assert not alive(pid) and not host.is_running("crashing")
    wait_until(lambda: not alive(child_pid), "the child gone")
    assert "clean exit" not in host.tail("crashing")  # no SIGTERM came first
    host.kill("crashing")  # not running: nothing to do


def test_a_name_that_never_ran_is_not_running_and_has_no_log(host: SshHost) -> None:
    assert not host.is_running("never-started")
    assert host.tail("never-started") == ""
    host.stop("never-started")


def test_start_in_a_network_namespace(host: SshHost) -> None:
    netns = f"vbs-hil-test-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", netns], capture_output=True, text=True)
    if made.returncode != 0:
        missing(f"`ip netns add` does not work here: {made.stderr.strip()}")
    try:
        pid = host.start("in-netns", "sleep 30", netns=netns)
        in_namespace = os.stat(f"/proc/{pid}/ns/net").st_ino
        assert in_namespace == os.stat(f"/run/netns/{netns}").st_ino
        assert in_namespace != os.stat("/proc/self/ns/net").st_ino
        host.stop("in-netns")
        assert not alive(pid)

        with pytest.raises(SshError, match="did not start on host bbu.*no-such-netns"):
            host.start("nowhere", "sleep 30", netns="no-such-netns")
    finally:
        subprocess.run(["ip", "netns", "delete", netns], check=False)


# -- host keys and authentication ------------------------------------------------------------

def host_key_fingerprint(sshd: Sshd) -> str:
    """The host key's fingerprint according to ssh-keygen (not our code)."""
    listing = subprocess.run(["ssh-keygen", "-lf", str(sshd.host_key.with_suffix(".pub"))],
                             check=True, capture_output=True, text=True).stdout
    return listing.split()[1]


@pytest.mark.parametrize("known_hosts", ["empty", "missing"])
def test_an_unknown_host_key_is_rejected_by_default(sshd: Sshd, known_hosts: str) -> None:
    if known_hosts == "empty":
        sshd.known_hosts.write_text("")
    else:
        sshd.known_hosts.unlink()
    with pytest.raises(HostKeyError) as info:
        SshHost("bbu", **sshd.host_params()).connect()
    message = str(info.value)
    assert f"127.0.0.1:{sshd.port}" in message
    assert host_key_fingerprint(sshd) in message
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {sshd.known_hosts}" in message
    assert "trust_unknown_host" in message
    assert (sshd.known_hosts.read_text() == "" if known_hosts == "empty"
            else not sshd.known_hosts.exists())


def test_an_unknown_host_key_is_recorded_when_trusted(sshd: Sshd,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    sshd.known_hosts.unlink()
    with caplog.at_level(logging.WARNING), \
            SshHost("bbu", **sshd.host_params(trust_unknown_host=True)) as trusting:
        assert trusting.run("echo in").stdout == "in\n"
    assert sshd.known_hosts.read_text() == sshd.host_key_line() + "\n"
    assert host_key_fingerprint(sshd) in caplog.text and "bbu" in caplog.text
    with SshHost("bbu", **sshd.host_params()) as strict:  # now a known host
        assert strict.run("echo in").stdout == "in\n"


@pytest.mark.parametrize("trust_unknown_host", [False, True])
def test_a_changed_host_key_is_always_rejected(sshd: Sshd, tmp_path: Path,
                                               trust_unknown_host: bool) -> None:
    other = ssh_keygen(tmp_path / "other_host_key")
    key_type, key_b64 = other.with_suffix(".pub").read_text().split()[:2]
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {key_type} {key_b64}\n")
    before = sshd.known_hosts.read_text()
    with pytest.raises(HostKeyError, match="CHANGED") as info:
        SshHost("bbu", **sshd.host_params(trust_unknown_host=trust_unknown_host)).connect()
    assert f"127.0.0.1:{sshd.port}" in str(info.value)
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}'" in str(info.value)
    assert sshd.known_hosts.read_text() == before


def test_a_key_the_host_does_not_accept_is_refused_naming_the_host(sshd: Sshd,
                                                                   tmp_path: Path) -> None:
    stranger_key = ssh_keygen(tmp_path / "id_stranger")
    with pytest.raises(AuthError) as info:
        SshHost("bbu", **sshd.host_params(key_path=str(stranger_key))).connect()
    assert f"127.0.0.1:{sshd.port}" in str(info.value)
    assert "authorized_keys" in str(info.value)


def test_a_passphrase_protected_key_points_to_the_agent(sshd: Sshd, tmp_path: Path) -> None:
    locked_key = ssh_keygen(tmp_path / "id_locked", passphrase="secret")
    with pytest.raises(AuthError, match="passphrase.*ssh-agent"):
        SshHost("bbu", **sshd.host_params(key_path=str(locked_key))).connect()


def test_without_key_and_agent_there_is_nothing_to_authenticate_with(sshd: Sshd) -> None:
    with pytest.raises(AuthError, match="no way to authenticate"):
        SshHost("bbu", **sshd.host_params(key_path=None, use_agent=False)).connect()


def test_a_port_without_sshd_is_reported_as_unreachable(sshd: Sshd) -> None:
    port = sshd.port
    sshd.kill()
    with pytest.raises(SshError, match=f"cannot connect to host bbu .*:{port}") as info:
        SshHost("bbu", **sshd.host_params()).connect()
    assert not isinstance(info.value, AuthError | HostKeyError)


# -- connection loss -------------------------------------------------------------------------

def test_a_dropped_connection_is_reported_until_reconnect(host: SshHost, sshd: Sshd) -> None:
    pid = host.start("survivor", "sleep 30")
    sshd.kill()
    with pytest.raises(ConnectionLostError) as info:
        host.run("true")
    assert f"127.0.0.1:{sshd.port}" in str(info.value) and "reconnect()" in str(info.value)
    with pytest.raises(ConnectionLostError):
        host.is_running("survivor")

    sshd.start()  # same port, same host key
    host.reconnect()
    assert host.run("echo back").stdout == "back\n"
    assert host.is_running("survivor")  # found again from the host's pid file
    host.stop("survivor")
    assert not alive(pid)
    host.close()
    host.close()


def test_a_connection_dropped_during_a_command_raises_connection_lost(
        host: SshHost, sshd: Sshd, tmp_path: Path) -> None:
    started = tmp_path / "started"

    def kill_sshd_once_the_command_runs() -> None:
        wait_until(started.exists, "the command started")
        sshd.kill()

    killer = threading.Thread(target=kill_sshd_once_the_command_runs)
    killer.start()
    try:
        with pytest.raises(ConnectionLostError, match="host bbu"):
            host.run(f"touch {started}; sleep 30", timeout_s=20)
    finally:
        killer.join()


def test_the_local_sshd_refuses_a_port_another_program_holds(tmp_path: Path,
                                                              sshd: Sshd) -> None:
    from drivers.emulated.sshd import LocalSshdError, ensure_running

    with pytest.raises(LocalSshdError, match=f"port {sshd.port} on 127.0.0.1 is taken"):
        ensure_running(tmp_path / "other-checkout", sshd.port)
