"""A srsRAN testbed from its config: rendered configs, processes, the bring-up chain.

srsEPC and the patched srsENB share the BBU host (S1 runs over loopback, as srsRAN's own
examples do); srsUE runs on the UE host (the same host with the ZMQ radio), its TUN
interface in a network namespace so that traffic to it crosses the LTE link. Each program's
files are rendered from `vbs.srsran.templates` and uploaded into ``<state_dir>/srsran`` on
its host, where its log lands too.

Ready lines, as srsRAN_4G release_23_11 prints them on its console:
srsEPC ``SP-GW Initialized.``, srsENB ``==== eNodeB started ===``, srsUE
``Network attach successful. IP: ...``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drivers.srsran.conf import ZMQ_BASE_SRATE, TestUe, render_program
from drivers.srsran.process import SrsProcess, SrsProcessError
from drivers.ssh import SshHost
from drivers.traffic.iperf3 import Iperf3Traffic
from hil.bringup import Bringup, Stage, Step
from hil.config import HilConfig, RadioConfig, SrsProcessConfig, SrsranConfig
from hil.errors import ConfigError

MME_ADDR = "127.0.1.100"
"""srsEPC's S1-MME and S1-U address (loopback alias, as srsRAN's examples)."""
ENB_ADDR = "127.0.1.1"
SGI_ADDR = "172.16.0.1"
"""srsEPC's SGi interface: where downlink traffic enters the core."""

READY = {
    "srsepc": re.compile(r"SP-GW Initialized\."),
    "srsenb": re.compile(r"==== eNodeB started ==="),
    "srsue": re.compile(r"Network attach successful\. IP: [0-9.]+"),
}
FAILURES = (
    re.compile(r"unrecognised option '[^']*'[^\n]*"),  # e.g. an unpatched srsenb and [rtctl]
    re.compile(r"Error initializing [^\n]*"),
    re.compile(r"Failed to [^\n]*"),
    re.compile(r"Could not [^\n]*"),
    re.compile(r"[^\n]*Address already in use[^\n]*"),
)
UNPATCHED_HINT = ("an srsenb that does not know [rtctl] is not patched: build it with "
                  "patches/srsRAN_4G (see its README)")


@dataclass
class SrsranTestbed:
    """What `hil.testbed` needs: the chain, the hosts to close, the eNB's control endpoint."""

    bringup: Bringup
    hosts: list[SshHost]
    traffic: Iperf3Traffic | None

    def close(self) -> None:
        try:
            self.bringup.down()
        finally:
            for host in self.hosts:
                host.close()


def build(cfg: HilConfig, connect: Callable[[str], SshHost]) -> SrsranTestbed:
    """Hosts connected, configs rendered, the bring-up chain ready to go `up`."""
    srs = cfg.vbs.srsran
    if srs is None:
        raise ConfigError("config", "vbs.srsran", "missing")
    if srs.epc.host != srs.enb.host:
        raise ConfigError("config", "vbs.srsran.epc.host",
                          f"srsEPC runs beside srsENB (S1 over loopback): use host "
                          f"{srs.enb.host!r} as for vbs.srsran.enb.host")
    hosts: dict[str, SshHost] = {}
    try:
        for name in dict.fromkeys((srs.enb.host, srs.ue.host)):
            hosts[name] = connect(name)
        bbu, ue_host = hosts[srs.enb.host], hosts[srs.ue.host]
        dirs = {name: _conf_dir(host) for name, host in hosts.items()}
        same_host = srs.enb.host == srs.ue.host
        epc = _program("srsepc", "epc", srs.epc, bbu, dirs[srs.enb.host],
                       _values(srs, dirs[srs.enb.host]), srs.templates)
        enb = _program("srsenb", "enb", srs.enb, bbu, dirs[srs.enb.host],
                       _values(srs, dirs[srs.enb.host],
                               radio=enb_radio(srs.radio, "localhost" if same_host
                                               else cfg.hosts[srs.ue.host].hostname),
                               gains=(srs.radio.enb_tx_gain_db, srs.radio.enb_rx_gain_db)),
                       srs.templates)
        ue = _program("srsue", "ue", srs.ue, ue_host, dirs[srs.ue.host],
                      _values(srs, dirs[srs.ue.host],
                              radio=ue_radio(srs.radio, "localhost" if same_host
                                             else cfg.hosts[srs.enb.host].hostname),
                              gains=(srs.radio.ue_tx_gain_db, srs.radio.ue_rx_gain_db)),
                      srs.templates)
        ue.start_timeout_s = srs.ue.attach_timeout_s
        steps = [_process_step(Stage.CORE_UP, epc), _process_step(Stage.ENB_UP, enb),
                 _ue_step(ue, srs.ue.netns)]
        traffic = None
        if cfg.traffic.kind == "iperf3":
            traffic = Iperf3Traffic(bbu, ue_host, core_address=cfg.traffic.core_address,
                                    ue_address=srs.ue.ip, port=cfg.traffic.port,
                                    ue_netns=srs.ue.netns, flow_limit_s=cfg.traffic.flow_limit_s)
            steps.append(Step(Stage.TRAFFIC_ON, "iperf3", traffic.start, traffic.close,
                              lambda: True))
    except BaseException:
        for host in hosts.values():
            host.close()
        raise
    return SrsranTestbed(Bringup(steps, max_restarts=srs.max_restarts), list(hosts.values()),
                         traffic)


def enb_radio(radio: RadioConfig, ue_address: str) -> tuple[str, str]:
    """srsENB's ``[rf] device_name`` and ``device_args``."""
    if radio.kind == "uhd":
        return "UHD", f"type=b200,serial={radio.enb_serial},clock={radio.clock_source}"
    return "zmq", (f"fail_on_disconnect=true,tx_port=tcp://*:{radio.zmq_enb_tx_port},"
                   f"rx_port=tcp://{ue_address}:{radio.zmq_ue_tx_port},id=enb,"
                   f"base_srate={ZMQ_BASE_SRATE}")


def ue_radio(radio: RadioConfig, enb_address: str) -> tuple[str, str]:
    """srsUE's ``[rf] device_name`` and ``device_args``."""
    if radio.kind == "uhd":
        return "UHD", f"type=b200,serial={radio.ue_serial},clock={radio.clock_source}"
    return "zmq", (f"tx_port=tcp://*:{radio.zmq_ue_tx_port},"
                   f"rx_port=tcp://{enb_address}:{radio.zmq_enb_tx_port},id=ue,"
                   f"base_srate={ZMQ_BASE_SRATE}")


def _values(srs: SrsranConfig, conf_dir: str, *, radio: tuple[str, str] = ("", ""),
            gains: tuple[float, float] = (0.0, 0.0)) -> dict[str, object]:
    sim = TestUe()
    return {
        "conf_dir": conf_dir, "mme_addr": MME_ADDR, "enb_addr": ENB_ADDR, "sgi_addr": SGI_ADDR,
        "n_prb": srs.n_prb, "dl_earfcn": srs.dl_earfcn,
        "device_name": radio[0], "device_args": radio[1],
        "tx_gain_db": gains[0], "rx_gain_db": gains[1],
        "channel_enable": "false" if srs.awgn_snr_db is None else "true",
        "awgn_snr_db": 30.0 if srs.awgn_snr_db is None else srs.awgn_snr_db,
        "rtctl_bind": srs.rtctl_bind,
        "ue_imsi": sim.imsi, "ue_key": sim.key, "ue_opc": sim.opc, "ue_imei": sim.imei,
        "ue_ip": srs.ue.ip, "netns": srs.ue.netns or "",
    }


def _conf_dir(host: SshHost) -> str:
    """``<state_dir>/srsran`` on the host, absolute (srsRAN does not expand ``~``)."""
    path = f"{host.state_dir.rstrip('/')}/srsran"
    relative = path[2:] if path.startswith("~/") else path
    result = host.run(f"mkdir -p {shlex.quote(relative)} && cd {shlex.quote(relative)} && pwd",
                      timeout_s=10)
    return result.stdout.strip()


def _program(name: str, program: str, process: SrsProcessConfig, host: SshHost, conf_dir: str,
             values: dict[str, object], templates: Path) -> SrsProcess:
    files = {f"{conf_dir}/{file}": text
             for file, text in render_program(templates, program, values).items()}
    return SrsProcess(name=name, host=host, binary=process.binary,
                      conf_path=f"{conf_dir}/{program}.conf", files=files, ready=READY[name],
                      failures=FAILURES, args=process.args, env=process.env,
                      start_timeout_s=process.start_timeout_s)


def _process_step(stage: Stage, process: SrsProcess) -> Step:
    def up() -> None:
        try:
            process.start()
        except SrsProcessError as exc:
            if "unrecognised option 'rtctl." in str(exc):
                raise SrsProcessError(f"{exc}; {UNPATCHED_HINT}") from exc
            raise
    return Step(stage, process.name, up, process.stop, process.is_running)


def _ue_step(ue: SrsProcess, netns: str | None) -> Step:
    """srsUE in its namespace (created if missing: needs root on the UE host)."""
    def up() -> None:
        if netns:
            ns = shlex.quote(netns)
            ue.host.run(f"ip netns list | grep -qw {ns} || ip netns add {ns}", timeout_s=10)
        ue.start()
    return Step(Stage.UE_ATTACHED, ue.name, up, ue.stop, ue.is_running)
