"""Real srsRAN as a testbed: srsEPC, the patched srsENB and srsUE (and iperf3) brought up in
order over SSH (`hil.testbeds.srsran_processes`), the eNB's rtctl socket connected; checked
program by program (patched, built from this checkout's series) and radio by radio before a
run.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

from drivers.protocols import RoundProbe
from drivers.rtctl.client import RtctlClient
from drivers.srsran.series import STAMP_FILE, UPSTREAM_TAG, Stamp, stale_reason
from drivers.ssh import SshHost
from hil.base.errors import HilError
from hil.base.scenarios import make_scenario
from hil.config import HilConfig, ScenarioConfig
from hil.probes import TrafficProbe, WatchdogProbe
from hil.testbeds import Check, Testbed, TestbedKind, VbsProcess, srsran_processes
from hil.testbeds.common import (
    as_seen_from_controller,
    client_curve,
    connect_host,
    home_of,
    host_probes,
    make_meter,
)
from hil.testbeds.srsran_processes import Program, binary_path, srsran_of

BUILD_HINT = ("build and install it with `hil srsran build --source <srsRAN_4G checkout>` "
              "(docs/operator.md, \"Real srsRAN\") on that host")
MACHINE_SCRIPT = ("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2; nproc; uname -sr; "
                  "hostname")


class SrsranTestbed(TestbedKind):
    """srsRAN over ZMQ or B210s (`vbs.kind: srsran`)."""

    checked_by_bringup: ClassVar[bool] = False  # its bring-up takes a minute: `hil run` does it
    sweep_channel: ClassVar[Literal["cqi", "snr"]] = "snr"

    def start(self, cfg: HilConfig, log_dir: Path) -> Testbed:
        """srsEPC, srsENB, srsUE (and iperf3) up in order over SSH; the eNB's rtctl
        connected."""
        testbed = srsran_processes.build(cfg, lambda name: connect_host(name, cfg.hosts[name]))
        try:
            testbed.bringup.up()
            ran = RtctlClient(control_endpoint(cfg), timeout_s=cfg.vbs.timeout_s,
                              retries=cfg.vbs.retries, curve=client_curve(cfg))
            meter = make_meter(cfg, {})
        except BaseException:
            testbed.close()
            raise
        watchdog = WatchdogProbe(testbed.bringup)
        probes: list[RoundProbe] = [watchdog, *host_probes(cfg)]
        if testbed.traffic is not None:
            sc = cfg.traffic.scenario
            probes.append(TrafficProbe(testbed.traffic, make_scenario(
                sc.name, cfg.seed, trace_path=sc.trace, switch_epoch=sc.switch_epoch)))

        def stop_vbs() -> None:
            try:
                watchdog.close()
            finally:
                testbed.close()
        return Testbed(ran=ran, meter=meter, stop_vbs=stop_vbs, probes=probes)

    def checks(self, cfg: HilConfig) -> Iterator[tuple[str, Check]]:
        srs = srsran_of(cfg)
        for name in dict.fromkeys((srs.enb.host, srs.ue.host)):
            yield f"binaries {name}", lambda name=name: _binaries(cfg, name)
        if srs.radio.kind == "uhd":
            for program, serial in (("enb", srs.radio.enb_serial), ("ue", srs.radio.ue_serial)):
                host = getattr(srs, program).host
                assert serial is not None  # the radio's validator requires both
                yield f"radio {program}", lambda host=host, serial=serial: _radio(cfg, host,
                                                                                  serial)

    def cell_prb(self, cfg: HilConfig) -> int:
        return srsran_of(cfg).n_prb

    def lock_host(self, cfg: HilConfig) -> str | None:
        return srsran_of(cfg).enb.host

    def conditioned(self, cfg: HilConfig, scenario: ScenarioConfig, dl_snr_db: float | None,
                    ul_snr_db: float | None) -> dict[str, Any]:
        """iperf3 offers the condition's loads; its SNRs become the channel emulators' noise."""
        srs = srsran_of(cfg)
        channel = {key: value for key, value in (("awgn_snr_db", dl_snr_db),
                                                  ("ul_awgn_snr_db", ul_snr_db))
                   if value is not None}
        return {"traffic": cfg.traffic.model_copy(update={"scenario": scenario}),
                "vbs": cfg.vbs.model_copy(update={"srsran": srs.model_copy(update=channel)})}

    def sweep_problem(self, cfg: HilConfig) -> str | None:
        if cfg.traffic.kind == "none":
            return ("traffic.kind is none: a sweep offers each condition's load through "
                    "iperf3; set traffic.kind: iperf3")
        return None

    def provenance(self, cfg: HilConfig) -> dict[str, Any]:
        """The eNB host's machine and the build stamp beside its srsenb."""
        srs = srsran_of(cfg)
        out: dict[str, Any] = {"kind": "srsran", "host": srs.enb.host,
                               "upstream_tag": UPSTREAM_TAG, "n_prb": srs.n_prb,
                               "radio": srs.radio.kind, "dl_awgn_snr_db": srs.awgn_snr_db,
                               "ul_awgn_snr_db": srs.ul_awgn_snr_db}
        if srs.radio.kind == "uhd":  # the B210s the bring-up opens by serial
            out["radio_serials"] = {"enb": srs.radio.enb_serial, "ue": srs.radio.ue_serial}
        try:
            with connect_host(srs.enb.host, cfg.hosts[srs.enb.host]) as host:
                lines = host.run(MACHINE_SCRIPT, timeout_s=10).stdout.splitlines()
                cpu, cpus, kernel, hostname = (lines + [""] * 4)[:4]
                out["machine"] = {"hostname": hostname, "cpu_model": cpu.strip(),
                                  "cpus": int(cpus) if cpus.isdigit() else None,
                                  "kernel": kernel}
                enb = binary_path(srs, "enb", home_of(host))
                stamp = f"{enb.rsplit('/', 2)[0]}/{STAMP_FILE}"
                read = host.run(f"cat {shlex.quote(stamp)}", timeout_s=10, check=False)
                out["build"] = (json.loads(read.stdout) if read.exit_code == 0
                                else f"no build stamp at {stamp}")
        except (HilError, ValueError) as exc:
            out["machine"] = f"not read: {exc}"
        return out

    def vbs_process(self, cfg: HilConfig) -> VbsProcess:
        return VbsProcess(srsran_of(cfg).enb.host, "srsenb")

    def ue_control_endpoint(self, cfg: HilConfig) -> str | None:
        return control_endpoint(cfg, "ue")


TESTBED = SrsranTestbed()


def control_endpoint(cfg: HilConfig, program: Literal["enb", "ue"] = "enb") -> str:
    """Where the controller reaches the eNB's (or the UE's) rtctl socket: its bind address, a
    wildcard replaced by its host's name."""
    srs = srsran_of(cfg)
    host, bind = ((srs.enb.host, srs.rtctl_bind) if program == "enb"
                  else (srs.ue.host, srs.ue.rtctl_bind))
    return as_seen_from_controller({"control": bind}, cfg.hosts[host].hostname)["control"]


def _binaries(cfg: HilConfig, name: str) -> str:
    """The srsRAN programs on one host, iperf3 too where it runs traffic: each one there;
    srsenb and srsue patched (they know [rtctl]) and built from this checkout's patch
    series (the stamp `hil srsran build` leaves beside their bin/ says so)."""
    srs = srsran_of(cfg)
    programs: list[Program] = [p for p in ("epc", "enb", "ue") if getattr(srs, p).host == name]
    found, problems = [], []
    with connect_host(name, cfg.hosts[name]) as host:
        home = home_of(host)
        for program in programs:
            process = getattr(srs, program)
            path = binary_path(srs, program, home)
            env = " ".join(f"{key}={shlex.quote(value)}" for key, value in process.env.items())
            where = host.run(f"command -v {shlex.quote(path)}", timeout_s=10, check=False)
            if where.exit_code != 0:
                keys = f"vbs.srsran.{program}.binary" + (
                    " under vbs.srsran.prefix" if path != process.binary else "")
                problems.append(f"{path} not found ({keys})")
                continue
            resolved = where.stdout.strip()
            if program == "epc":
                found.append(resolved)
                continue
            helped = host.run(f"env {env} {shlex.quote(resolved)} --help 2>&1 | "
                              "grep -q rtctl.enable", timeout_s=20, check=False)
            if helped.exit_code != 0:
                problems.append(f"{resolved} has no [rtctl] options: it is not patched")
                continue
            try:
                stamp = _stamp_beside(host, resolved)
            except HilError as exc:
                problems.append(str(exc))
                continue
            found.append(f"{resolved} (series {stamp.short}, built {stamp.built_at})")
        if cfg.traffic.kind == "iperf3":
            if host.run("command -v iperf3", timeout_s=10, check=False).exit_code != 0:
                problems.append("iperf3 not found (traffic.kind iperf3): apt-get install iperf3")
            else:
                found.append("iperf3")
    if problems:
        hint = "" if all(p.startswith("iperf3") for p in problems) else f"; {BUILD_HINT}"
        raise HilError(f"host {name}: " + "; ".join(problems) + hint)
    return f"{', '.join(found)} on {name}"


def _stamp_beside(host: SshHost, binary: str) -> Stamp:
    """The build stamp in the prefix above `binary`'s bin/, current with this checkout."""
    stamp_path = f"{binary.rsplit('/', 2)[0]}/{STAMP_FILE}"
    result = host.run(f"cat {shlex.quote(stamp_path)}", timeout_s=10, check=False)
    if result.exit_code != 0:
        raise HilError(f"{binary}: no build stamp {stamp_path}, so which patch series it was "
                       "built from is unknown")
    try:
        stamp = Stamp.from_json(result.stdout)
    except ValueError as exc:
        raise HilError(f"{stamp_path}: unreadable build stamp ({exc})") from None
    if reason := stale_reason(stamp):
        raise HilError(f"{binary}: {reason}")
    return stamp


def _radio(cfg: HilConfig, name: str, serial: str) -> str:
    """The B210 with this serial answers uhd_find_devices on its host."""
    with connect_host(name, cfg.hosts[name]) as host:
        result = host.run(f"uhd_find_devices --args serial={shlex.quote(serial)}",
                          timeout_s=30, check=False)
    if result.exit_code != 0 or serial not in result.stdout:
        said = (result.stdout + result.stderr).strip().splitlines()
        raise HilError(f"host {name}: no USRP with serial {serial} (uhd_find_devices: "
                       f"{said[-1] if said else 'no output'}); check the USB 3 cable, "
                       "uhd-host, and the serial in vbs.srsran.radio")
    return f"B210 {serial} on {name}"


