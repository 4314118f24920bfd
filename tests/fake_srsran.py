"""Test double of srsepc, srsenb and srsue, for the bring-up tests without srsRAN.

`fake_srsran.py {epc|enb|ue} CONF` reads the rendered config the way
srsRAN does (INI; sections and keys must exist), prints the program's real ready line and
stays up until SIGTERM. The fake eNB is the emulated vBS serving rtctl on the endpoint of
the config's ``[rtctl]`` section, so a whole `hil run` goes through the srsRAN drivers.
It is a double for the binaries only: the `srsran`-marked tests run the real ones.
"""

from __future__ import annotations

import configparser
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

READY = {"epc": "SP-GW Initialized.", "enb": "\n==== eNodeB started ===",
         "ue": "Network attach successful. IP: 172.16.0.2"}
REQUIRED = {"epc": [("mme", "mme_bind_addr"), ("hss", "db_file"), ("spgw", "sgi_if_addr")],
            "enb": [("enb", "n_prb"), ("enb_files", "rr_config"), ("rf", "device_args"),
                    ("rtctl", "endpoint"), ("channel.dl.awgn", "snr")],
            "ue": [("rf", "device_args"), ("usim", "imsi"), ("rat.eutra", "dl_earfcn"),
                   ("rtctl", "endpoint")]}
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script by the fake binaries

from drivers.srsran.series import STAMP_FILE, Stamp, patch_files, series_sha256  # noqa: E402


def install_fake_prefix(prefix: Path, *, stamp: str | None = "current",
                        patched: bool = True) -> Path:
    """A prefix as `hil srsran build` leaves it, with these doubles as its programs.

    `stamp`: "current" (this checkout's series), "stale" (an older series) or None (no
    stamp, as a build by hand); `patched` False: srsenb and srsue know no [rtctl]."""
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    for program in ("epc", "enb", "ue"):
        path = prefix / "bin" / f"srs{program}"
        if program != "epc" and not patched:
            path.write_text("#!/bin/sh\necho '  --enb.n_prb arg'\n")
        else:
            path.write_text(f"#!/bin/sh\ncd {REPO}\nexec {sys.executable} "
                            f"{REPO / 'tests' / 'fake_srsran.py'} {program} \"$@\"\n")
        path.chmod(0o755)
    if stamp is not None:
        series = series_sha256() if stamp == "current" else "0" * 64
        (prefix / STAMP_FILE).write_text(Stamp(
            series_sha256=series, upstream_commit="eea87b1d893ae58e0b08bc381730c502024ae71f",
            patches=[path.name for path in patch_files()],
            built_at="2026-01-01T00:00:00Z").to_json())
    return prefix


def main() -> int:
    program = sys.argv[1]
    if sys.argv[2] == "--help":  # what preflight asks a patched srsenb or srsue
        print("  --rtctl.enable arg\n  --rtctl.endpoint arg" if program != "epc" else "")
        return 0
    conf_path = Path(sys.argv[2])
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_string(conf_path.read_text())
    for section, key in REQUIRED[program]:
        if not conf.has_option(section, key):
            print(f"Failed to read configuration: {section}.{key} missing", flush=True)
            return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    child = None
    if program == "enb":
        child = subprocess.Popen(
            [sys.executable, "-m", "drivers.emulated", "--calibration",
             str(REPO / "testbed_configs" / "calibration" / "emulated-nuc.yaml"),
             "--control", conf["rtctl"]["endpoint"], "--exit-with-parent"],
            cwd=REPO, stdout=subprocess.PIPE, text=True)
        child.stdout.readline()  # its ready line: the endpoint is bound
    print(READY[program], flush=True)
    while not stop.wait(0.1):
        if child is not None and child.poll() is not None:
            return 1
    if child is not None:
        child.terminate()
        child.wait()
    time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
