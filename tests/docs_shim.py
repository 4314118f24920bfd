"""Stand-ins for the programs the docs' shell blocks call (`hil`, `.venv/bin/python`, `make`,
`pip`, `dask`), so tests/test_docs_commands.py can run each ```sh block of the README and the
guides with bash, loops and variables as a reader would, against the emulated testbed.

A `hil` command runs for real, in this process, with small sizes where a flag allows
(`SMALL`). A command that needs what CI has not (real srsRAN, a lab's hosts, a Dask
scheduler, a server that runs until stopped) is not run, nor is one that another test runs
at CI size (the Meta-HRL protocol, the SB3 example): it matches an entry of `NOT_RUN`,
which says why. Anything else is an error: a new kind of command in the docs needs a rule
here. Each command is logged (JSON lines in $DOCS_SHIM_LOG) for the test to check.

Each command runs in a child forked from a server that has imported what `hil` loads
(`--serve SOCKET`): a stand-in (`--client PROGRAM ARGS...`, Python without site, ~20 ms)
hands the server its arguments, folder, environment and standard streams, and exits with
the command's code. A fresh interpreter per command would spend ~2.5 s importing before
each of the docs' ~25 commands.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import sys
import time
import traceback
from pathlib import Path

SMALL: dict[str, dict[str, str]] = {
    "run": {"--rounds": "30"},
    "replay": {"--seeds": "1", "--rounds": "150", "--executor": "local:1"},
    "compare": {"--seeds": "2", "--rounds": "15"},
    "collect": {"--dwell-rounds": "1", "--warmup-rounds": "0"},
}
"""Per command, the flags set to a small value (added where the command does not give
them): the docs show the full sizes, CI checks that the command runs."""
RESUME_ROUNDS = "45"
"""`hil run --resume`'s new total: more than SMALL's 30 rounds of the run it continues."""

NOT_RUN: list[tuple[str, str]] = [
    (r"^make (run|test)\b", "the two README commands: CI runs `make test`; `make run` is "
     "`hil run` of zmq-emulated-16.yaml, which the first README block's runs cover"),
    (r"^make docs\b", "tests/test_docs.py builds the site with warnings as errors"),
    (r"^make srsran\b|^hil srsran build\b", "builds srsRAN (15 min): tests/test_srsran_build.py "
     "runs the recipe on a stub source tree"),
    (r"zmq-srsran\.yaml|sweeps/srsran-", "needs the patched srsRAN build (the `srsran` tests "
     "run these testbeds when it is installed)"),
    (r"b210-lab|lab/bbu", "needs a lab's own hosts, B210s and meter"),
    (r"^python -m pytest\b", "the test suite itself (make test's second pass)"),
    (r"^(pip|dask)\b", "installs packages or starts Dask daemons on other machines"),
    (r"--executor dask:10\.", "needs the Dask scheduler at 10.0.0.5 (tests/test_executor.py "
     "runs replays on dask-local)"),
    (r"^hil serve\b", "serves until stopped: tests/test_serve.py runs it and reads its page"),
    (r"^hil bench$", "the full benchmark (10 min): tests/test_bench.py runs `hil bench --quick`"),
    (r"^hil bench --soak", "tests/test_soak.py runs the soak (`hil.soak.soak`, 2000 rounds) and "
     "checks its figures"),
    (r"^hil metahrl --out", "the Meta-HRL protocol: tests/test_metahrl_experiments.py runs it "
     "at CI size (a sweep of every experiment, ~2 min)"),
    (r"^hil metahrl --save-model", "tests/test_metahrl_experiments.py saves a meta-model at "
     "CI size and starts a metahrl run from it"),
    (r"^hil (run|compare) testbed_configs/zmq-emulated-slices", "Meta-HRL pretrains for ~50 s "
     "before its first round: tests/test_meta_hrl_agent.py and tests/test_online_compare.py "
     "run metahrl online on a smaller DU"),
    (r"^python -m tools\.gym_sb3", "tests/test_gym.py runs this example at 150 rounds"),
]
"""(pattern on the command as written, why it is not run here)."""


def _program(argv: list[str]) -> str:
    """The command as the docs write it, with `.venv/bin/` dropped."""
    return shlex.join([Path(argv[0]).name, *argv[1:]])


def not_run_reason(command: str) -> str | None:
    """Why `command` is not run in CI, or None if it is run."""
    for pattern, reason in NOT_RUN:
        if re.search(pattern, command):
            return reason
    return None


def smaller(command: str, args: list[str]) -> list[str]:
    """`args` with the SMALL sizes of `command` set."""
    sizes = dict(SMALL.get(command, {}))
    if command == "run" and "--resume" in args:
        sizes["--rounds"] = RESUME_ROUNDS
    args = list(args)
    for flag, value in sizes.items():
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


def _log(entry: dict) -> None:
    with open(os.environ["DOCS_SHIM_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\n")


def main(argv: list[str]) -> int:
    command = _program(argv)
    reason = not_run_reason(command)
    if reason is not None:
        _log({"command": command, "not_run": reason})
        return 0
    program, args = Path(argv[0]).name, argv[1:]
    start = time.monotonic()
    if program == "hil" and args:
        from tools.cli import main as hil
        ran = ["hil", *smaller(args[0], args)]
        code = hil(ran[1:])
    else:
        _log({"command": command, "unknown": True})
        print(f"docs_shim: no rule for `{command}`: add one to tests/docs_shim.py (SMALL or "
              "NOT_RUN)", file=sys.stderr)
        return 3
    _log({"command": command, "ran": shlex.join(ran), "exit": code,
          "s": round(time.monotonic() - start, 1)})
    return code


PRELOADED = ("tools.cli", "tools.replay.command", "tools.collect.command", "tools.collect.sweep",
             "tools.fit_power.command", "tools.landscape.command", "hil.preflight", "hil.run",
             "hil.summary", "hil.plots", "hil.testbeds.emulated", "hil.testbeds.keys")
"""What the docs' `hil` commands import, imported once by the server."""


def serve(path: str) -> None:
    """Run each command a client sends in a child forked from this warm process, one at a
    time (a page's blocks run in order), and answer with its exit code."""
    import importlib

    for module in PRELOADED:
        importlib.import_module(module)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path + ".tmp")
    os.rename(path + ".tmp", path)  # the socket appears once it can be reached
    server.listen()
    while True:
        connection, _ = server.accept()
        with connection:
            request, fds = _receive(connection)
            sys.stdout.flush()
            sys.stderr.flush()
            child = os.fork()
            if child == 0:
                _run_child(request, fds)
            for fd in fds:
                os.close(fd)
            _, status = os.waitpid(child, 0)
            connection.sendall(str(os.waitstatus_to_exitcode(status)).encode())


def _receive(connection: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(connection, 1 << 16, 3)
    while chunk := connection.recv(1 << 16):
        data += chunk
    return json.loads(data), fds


def _run_child(request: dict, fds: list[int]) -> None:
    """The command in this forked child, on the client's streams, folder and environment."""
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        code = main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception:  # noqa: BLE001  (the child must reach os._exit; it says what failed)
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def client(argv: list[str]) -> int:
    """Hand `argv` (the program as called, its arguments) to the server; its exit code."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(os.environ["DOCS_SHIM_SOCKET"])
        request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
        socket.send_fds(connection, [json.dumps(request).encode()], [0, 1, 2])
        connection.shutdown(socket.SHUT_WR)
        return int(connection.recv(16) or b"1")


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        serve(sys.argv[2])
    elif sys.argv[1] == "--client":
        sys.exit(client(sys.argv[2:]))
    else:
        sys.exit(main(sys.argv[1:]))
