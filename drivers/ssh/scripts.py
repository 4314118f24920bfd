"""The POSIX sh scripts SshHost runs on a host, built in one place so quoting is checked once.

Every interpolated value goes through `shlex.quote`; numbers are formatted by us.

A process started under a name leaves two files in the host's state directory:
`<name>.log` (its stdout and stderr; the previous run's log is kept as `<name>.log.1`) and
`<name>.pid` holding "PID START_TICKS": its PID and its start time in clock ticks since boot
(field 22 of /proc/PID/stat). A PID alone can be recycled by the kernel after a crash; the
pair cannot, so the checks below never mistake another process for ours. The files live on
the host, so a restarted controller still finds (and can stop) what an earlier one started.

The process is started with `setsid`, so it outlives the SSH session and is the leader of
its own process group: `stop` signals that whole group (a shell wrapper's children too)
and waits until all of it has exited.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from shlex import quote

# Prints "STATE START_TICKS" of PID $1. Field 2 (the command name, in parentheses) may itself
# hold spaces and parentheses, so everything through the last ") " is cut first; field 3
# (state) then is $1 and field 22 (start time) is $20.
_PROC_STAT = """proc_stat() {
  awk '{ sub(/^.*\\) /, ""); print $1, $20 }' "/proc/$1/stat" 2>/dev/null
}"""

# A zombie (Z) or dead (X) process has exited; it only waits for its parent to reap it.
_ALIVE = """alive() {{
  set -- $(cat {pid_file} 2>/dev/null)
  [ $# -eq 2 ] || return 1
  pid=$1 start=$2
  set -- $(proc_stat "$pid")
  [ "$2" = "$start" ] && [ "$1" != Z ] && [ "$1" != X ]
}}"""

# Whether a process of the group that `alive`'s $pid leads has not exited yet. A shell leader
# ends at SIGTERM at once, while its children may still be writing what they write at SIGTERM
# (iperf3's report): `stop` waits for the whole group. The kernel gives no new process a PID
# still used as a group's ID, so no stranger's group can share it while ours lives.
_GROUP_ALIVE = """group_alive() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v group="$pid" '
    { sub(/^.*\\) /, "") }
    $3 == group && $1 != "Z" && $1 != "X" { found = 1 }
    END { exit !found }'
}"""

# Words that, first on a line, make it more than one program call.
_RESERVED_WORDS = frozenset({"!", "{", "[[", "case", "coproc", "for", "function", "if",
                             "select", "time", "until", "while"})
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")

POLL_S = 0.05
KILL_WAIT_S = 2.0  # after SIGKILL, how long a process may take to vanish
EXIT_ALREADY_RUNNING = 3
EXIT_DID_NOT_START = 4
EXIT_SURVIVED_SIGKILL = 5


@dataclass(frozen=True)
class ProcessFiles:
    """The state files of one named process, as paths relative to the login directory."""

    log: str
    pid: str

    @classmethod
    def in_dir(cls, state_dir: str, name: str) -> ProcessFiles:
        return cls(log=f"{state_dir}/{name}.log", pid=f"{state_dir}/{name}.pid")


def start(files: ProcessFiles, command: str, *, netns: str | None,
          env: Mapping[str, str]) -> str:
    """Start `command` detached; print "PID START_TICKS" once it runs.

    The child writes the pid file itself just before it execs the command, so the PID is
    the command's whatever the launchers in between (setsid, ip netns exec, env) do (see
    `_exec_line` for which PID that is). `$!` is setsid's PID, and setsid (backgrounded, so
    not a process group leader) execs rather than forks: while it lives, the child is
    launching.
    """
    pid_file, tmp_file = quote(files.pid), quote(files.pid + ".tmp")
    child = "\n".join([
        _PROC_STAT,
        'set -- $(proc_stat $$)',
        f'echo "$$ $2" > {tmp_file} && mv -f {tmp_file} {pid_file} && {_exec_line(command)}',
    ])
    launcher = ["setsid"]
    if netns is not None:
        launcher += ["ip", "netns", "exec", quote(netns)]
    if env:
        launcher += ["env", *(quote(f"{key}={value}") for key, value in env.items())]
    log_file, state_dir = quote(files.log), quote(files.log.rpartition("/")[0] or ".")
    return "\n".join([
        _PROC_STAT,
        _ALIVE.format(pid_file=pid_file),
        f"if alive; then echo \"already running as PID $pid\"; exit {EXIT_ALREADY_RUNNING}; fi",
        f"mkdir -p {state_dir} && rm -f {pid_file} || exit {EXIT_DID_NOT_START}",
        f"if [ -e {log_file} ]; then mv -f {log_file} {quote(files.log + '.1')}; fi",
        f"{' '.join(launcher)} sh -c {quote(child)} </dev/null >{log_file} 2>&1 &",
        "child=$!",
        # until the child wrote the pid file, or died without (e.g. no such netns)
        f"while [ ! -s {pid_file} ] && kill -0 $child 2>/dev/null; do sleep {POLL_S}; done",
        f"cat {pid_file} 2>/dev/null || exit {EXIT_DID_NOT_START}",
    ])


def _exec_line(command: str) -> str:
    """`exec` the program itself when `command` is plainly one program with arguments.

    Then the PID is the program's, which is what host metrics measure: dash (Debian's sh)
    forks even for `sh -c 'prog args'`. Anything else (operators, redirections, $(...),
    keywords, variable assignments, several lines) runs under `sh -c`; its PID is then that
    shell's, which leads the process group that `stop` signals.
    """
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
    except ValueError:  # unbalanced quotes: let sh report them in the log
        words = []
    one_program = (
        bool(words) and "\n" not in command
        and words[0] not in _RESERVED_WORDS and not _ASSIGNMENT.match(words[0])
        and not any(set(word) <= set(lexer.punctuation_chars) for word in words))
    return f"exec {command}" if one_program else f"exec sh -c {quote(command)}"


def is_running(files: ProcessFiles) -> str:
    """Exit 0 if the recorded process is alive and is still the one we started, else 1."""
    return "\n".join([_PROC_STAT, _ALIVE.format(pid_file=quote(files.pid)), "alive"])


def stop(files: ProcessFiles, timeout_s: float) -> str:
    """SIGTERM the process group, SIGKILL it after timeout_s; print what it took.

    Prints "not running", "terminated" or "killed" once no process of the group runs;
    removes the pid file then.
    """
    pid_file = quote(files.pid)
    gone = f"rm -f {pid_file}; echo"
    return "\n".join([
        _PROC_STAT,
        _ALIVE.format(pid_file=pid_file),
        _GROUP_ALIVE,
        f'if ! alive; then {gone} "not running"; exit 0; fi',
        *_signal_group("TERM", max(1, round(timeout_s / POLL_S)), f'{gone} "terminated"'),
        *_signal_group("KILL", round(KILL_WAIT_S / POLL_S), f'{gone} "killed"'),
        f"exit {EXIT_SURVIVED_SIGKILL}",
    ])


def kill(files: ProcessFiles) -> str:
    """SIGKILL the process group at once, as a crash would end it; print what it took
    ("not running" or "killed"). The pid file stays: the process did not stop cleanly."""
    return "\n".join([
        _PROC_STAT,
        _ALIVE.format(pid_file=quote(files.pid)),
        _GROUP_ALIVE,
        'if ! alive; then echo "not running"; exit 0; fi',
        *_signal_group("KILL", round(KILL_WAIT_S / POLL_S), 'echo "killed"'),
        f"exit {EXIT_SURVIVED_SIGKILL}",
    ])


def _signal_group(signal: str, polls: int, when_gone: str) -> list[str]:
    """Lines that send `signal` to the process group, wait up to `polls` polls for all of it
    to go, and if it went, run `when_gone` and exit 0."""
    return [f'kill -{signal} -"$pid" 2>/dev/null', "i=0",
            f"while group_alive && [ $i -lt {polls} ]; do i=$((i + 1)); sleep {POLL_S}; done",
            f"if ! group_alive; then {when_gone}; exit 0; fi"]


def tail(files: ProcessFiles, lines: int) -> str:
    """The log's last lines; nothing (not an error) if the process never ran."""
    return f"tail -n {int(lines)} -- {quote(files.log)} 2>/dev/null || true"


def with_timeout(command: str, timeout_s: float, kill_after_s: float) -> str:
    """`command` under coreutils timeout, which kills its whole process group on expiry.

    `; exit $?` keeps the login shell from exec'ing `timeout`, so a command killed by a
    signal still ends with an exit status (128 + signal) rather than an exit-signal message
    that paramiko ignores.
    """
    return (f"timeout -k {kill_after_s:.3f} {timeout_s:.3f} sh -c {quote(command)}; "
            "exit $?")
