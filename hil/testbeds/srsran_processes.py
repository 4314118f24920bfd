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
from typing import Literal

from drivers.srsran.conf import ZMQ_BASE_SRATE, TestUe, render_program
from drivers.srsran.process import SrsProcess
from drivers.ssh import SshHost
from drivers.traffic.iperf3 import Iperf3Traffic
from hil.bringup import Bringup, Stage, Step
from hil.config import HilConfig, RadioConfig, SrsProcessConfig, SrsranConfig, SrsranVbsConfig
from hil.testbeds.common import home_of

MME_ADDR = "127.0.1.100"
"""srsEPC's S1-MME and S1-U address (loopback alias, as srsRAN's examples)."""
ENB_ADDR = "127.0.1.1"
SGI_ADDR = "172.16.0.1"
"""srsEPC's SGi interface: where downlink traffic enters the core."""

Program = Literal["epc", "enb", "ue"]

READY = {
    "srsepc": re.compile(r"SP-GW Initialized\."),
    "srsenb": re.compile(r"==== eNodeB started ==="),
    "srsue": re.compile(r"Network attach successful\. IP: [0-9.]+"),
}
UNPATCHED_HINT = ("an srsenb or srsue that does not know [rtctl] is not patched: build it "
                  "with patches/srsRAN_4G (see its README)")
FAILURES = (
    (re.compile(r"unrecognised option 'rtctl\.[^']*'[^\n]*"), UNPATCHED_HINT),
    (re.compile(r"unrecognised option '[^']*'[^\n]*"), "a template key this srsRAN lacks"),
    (re.compile(r"Error initializing [^\n]*"), ""),
    (re.compile(r"Failed to [^\n]*"), ""),
    (re.compile(r"Could not [^\n]*"), ""),
    (re.compile(r"[^\n]*Address already in use[^\n]*"),
     "a program from an earlier run still holds the port"),
)


@dataclass
class SrsranProcesses:
    """srsRAN ready to go up: the bring-up chain, the hosts to close, the traffic."""

    bringup: Bringup
    hosts: list[SshHost]
    traffic: Iperf3Traffic | None

    def close(self) -> None:
        try:
            self.bringup.down()
        finally:
            for host in self.hosts:
                host.close()


def srsran_of(cfg: HilConfig) -> SrsranConfig:
    """The `vbs.srsran` section of a srsRAN testbed's config."""
    assert isinstance(cfg.vbs, SrsranVbsConfig), "a srsRAN testbed's config"
    return cfg.vbs.srsran


def build(cfg: HilConfig, connect: Callable[[str], SshHost]) -> SrsranProcesses:
    """Hosts connected, configs rendered, the bring-up chain ready to go `up`."""
    srs = srsran_of(cfg)
    hosts: dict[str, SshHost] = {}
    try:
        for name in dict.fromkeys((srs.enb.host, srs.ue.host)):
            hosts[name] = connect(name)
        dirs = {name: _conf_dir(host) for name, host in hosts.items()}

        def program(name: str, kind: Program) -> SrsProcess:
            process: SrsProcessConfig = getattr(srs, kind)
            host, conf_dir, home = hosts[process.host], dirs[process.host], home_of(
                hosts[process.host])
            files = render_program(srs.templates, kind,
                                   template_values(cfg, kind, conf_dir, home))
            return SrsProcess(name=name, host=host, binary=binary_path(srs, kind, home),
                              conf_path=f"{conf_dir}/{kind}.conf", ready=READY[name],
                              files={f"{conf_dir}/{file}": text for file, text in files.items()},
                              failures=FAILURES, args=process.args, env=process.env,
                              start_timeout_s=process.start_timeout_s)

        epc, enb, ue = program("srsepc", "epc"), program("srsenb", "enb"), program("srsue", "ue")
        steps = [_process_step(Stage.CORE_UP, epc), _process_step(Stage.ENB_UP, enb),
                 _ue_step(ue, srs.ue.netns)]
        traffic = None
        if cfg.traffic.kind == "iperf3":
            traffic = Iperf3Traffic(hosts[srs.enb.host], hosts[srs.ue.host],
                                    core_address=cfg.traffic.core_address, ue_address=srs.ue.ip,
                                    port=cfg.traffic.port, ue_netns=srs.ue.netns,
                                    flow_limit_s=cfg.traffic.flow_limit_s)
            path = (ControlPath(srs.ue.netns, cfg.traffic.core_address, srs.ue.ip)
                    if srs.enb.host == srs.ue.host and srs.ue.netns else None)
            steps.append(_traffic_step(traffic, hosts[srs.enb.host], path))
    except BaseException:
        for host in hosts.values():
            host.close()
        raise
    return SrsranProcesses(Bringup(steps, max_restarts=srs.max_restarts), list(hosts.values()),
                         traffic)


def binary_path(srs: SrsranConfig, program: Program, home: str) -> str:
    """Where `program`'s binary is on its host: a bare name under `prefix`/bin when a prefix
    is set, else as given; a leading ``~/`` is the host user's `home` (a command is run
    quoted, so no shell would expand it)."""
    binary = getattr(srs, program).binary
    if srs.prefix is not None and "/" not in binary:
        binary = f"{srs.prefix.rstrip('/')}/bin/{binary}"
    return f"{home.rstrip('/')}/{binary[2:]}" if binary.startswith("~/") else binary


@dataclass(frozen=True)
class ControlPath:
    """iperf3's TCP control connections between the core and the UE namespace of one host,
    carried over a veth pair instead of the LTE link; the UDP flows still cross the link.

    Why: a flow filling one direction of the link (demand above what the caps let
    through) delays or drops the handshake of the other direction's flow, which then never
    connects (measured: 200 rounds with no UL, or no DL, traffic). Policy routing by
    protocol (`ip rule ... ipproto tcp`, Linux >= 4.17) sends only TCP to the other end's
    LTE address over the veth, in both namespaces.
    """

    netns: str
    core_address: str
    ue_address: str
    table: int = 1001
    subnet: tuple[str, str] = ("10.255.0.1", "10.255.0.2")  # core side, UE side, a /30

    @property
    def links(self) -> tuple[str, str]:
        return f"hilc-{self.netns}"[:15], f"hilu-{self.netns}"[:15]

    def up_script(self) -> str:
        """Replaces what an earlier run left, so it can run again."""
        ns = shlex.quote(self.netns)
        core_link, ue_link = self.links
        core_ip, ue_ip = self.subnet
        return "\n".join([
            "set -e",
            self.down_script(),
            f"ip link add {core_link} type veth peer name {ue_link} netns {ns}",
            f"ip addr add {core_ip}/30 dev {core_link}",
            f"ip link set {core_link} up",
            f"ip netns exec {ns} ip addr add {ue_ip}/30 dev {ue_link}",
            f"ip netns exec {ns} ip link set {ue_link} up",
            f"ip rule add ipproto tcp to {self.ue_address} table {self.table}",
            f"ip route replace {self.ue_address} via {ue_ip} dev {core_link} table {self.table}",
            f"ip netns exec {ns} ip rule add ipproto tcp to {self.core_address} "
            f"table {self.table}",
            f"ip netns exec {ns} ip route replace {self.core_address} via {core_ip} "
            f"dev {ue_link} table {self.table}",
        ])

    def down_script(self) -> str:
        """Removes the pair and both rules; quiet about what is not there."""
        ns = shlex.quote(self.netns)
        return "\n".join([
            f"ip link del {self.links[0]} 2>/dev/null || true",
            f"while ip rule del ipproto tcp to {self.ue_address} table {self.table} "
            "2>/dev/null; do :; done",
            f"while ip netns exec {ns} ip rule del ipproto tcp to {self.core_address} "
            f"table {self.table} 2>/dev/null; do :; done",
        ])


def radio_device(radio: RadioConfig, end: Literal["enb", "ue"], peer: str) -> tuple[str, str]:
    """``[rf] device_name`` and ``device_args`` of one end; `peer` reaches the other end.

    ZMQ: each end sends on its own port and receives on the other's; the eNB stops when its
    UE disconnects (``fail_on_disconnect``), so a dead UE shows as a dead eNB, not a hang.
    Both ends on one host (`peer` "localhost") send on loopback only: anyone who reached a
    ZMQ radio port could take or inject the cell's samples.
    """
    if radio.kind == "uhd":
        serial = radio.enb_serial if end == "enb" else radio.ue_serial
        return "UHD", f"type=b200,serial={serial},clock={radio.clock_source}"
    own, other = ((radio.zmq_enb_tx_port, radio.zmq_ue_tx_port) if end == "enb"
                  else (radio.zmq_ue_tx_port, radio.zmq_enb_tx_port))
    fail = "fail_on_disconnect=true," if end == "enb" else ""
    bind = "127.0.0.1" if peer == "localhost" else "*"
    return "zmq", (f"{fail}tx_port=tcp://{bind}:{own},rx_port=tcp://{peer}:{other},id={end},"
                   f"base_srate={ZMQ_BASE_SRATE}")


def template_values(cfg: HilConfig, program: Program, conf_dir: str,
                    home: str) -> dict[str, object]:
    """The values `program`'s templates are rendered with, all from the config; `conf_dir`
    is where its files go on its host, `home` the host user's home. The bring-up and every
    test that renders the templates call this, so a new placeholder without a value fails
    everywhere at once.

    With CURVE, srsENB reads the server's keys from `vbs.server_curve_dir` (`hil keys
    --install` puts them there), or from `vbs.curve_dir`'s path on a one-machine testbed."""
    srs = srsran_of(cfg)
    radio, device = srs.radio, ("", "")
    gains = (0.0, 0.0)
    if program in ("enb", "ue"):
        other = srs.ue.host if program == "enb" else srs.enb.host
        peer = "localhost" if srs.enb.host == srs.ue.host else cfg.hosts[other].hostname
        device = radio_device(radio, program, peer)
        gains = ((radio.enb_tx_gain_db, radio.enb_rx_gain_db) if program == "enb"
                 else (radio.ue_tx_gain_db, radio.ue_rx_gain_db))
    sim = TestUe()
    return {
        "conf_dir": conf_dir, "mme_addr": MME_ADDR, "enb_addr": ENB_ADDR, "sgi_addr": SGI_ADDR,
        "n_prb": srs.n_prb, "dl_earfcn": srs.dl_earfcn,
        "device_name": device[0], "device_args": device[1],
        "tx_gain_db": gains[0], "rx_gain_db": gains[1],
        "channel_enable": "false" if srs.awgn_snr_db is None else "true",
        "awgn_snr_db": 30.0 if srs.awgn_snr_db is None else srs.awgn_snr_db,
        "ul_channel_enable": "false" if srs.ul_awgn_snr_db is None else "true",
        "ul_awgn_snr_db": 30.0 if srs.ul_awgn_snr_db is None else srs.ul_awgn_snr_db,
        "ul_awgn_signal_power_dbfs": srs.ul_awgn_signal_power_dbfs,
        "rtctl_bind": srs.rtctl_bind, "ue_rtctl_bind": srs.ue.rtctl_bind,
        "rtctl_curve_dir": cfg.vbs.server_keys_at(home) or "",
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


def _process_step(stage: Stage, process: SrsProcess) -> Step:
    return Step(stage, process.name, process.start, process.stop, process.is_running)


def _traffic_step(traffic: Iperf3Traffic, core_host: SshHost, path: ControlPath | None
                  ) -> Step:
    """The iperf3 servers, with their control path beside the LTE link where one fits."""
    def up() -> None:
        if path is not None:
            core_host.run(path.up_script(), timeout_s=20)
        traffic.start()

    def down() -> None:
        try:
            traffic.close()
        finally:
            if path is not None:
                core_host.run(path.down_script(), timeout_s=20, check=False)
    return Step(Stage.TRAFFIC_ON, "iperf3", up, down, lambda: True)


def _ue_step(ue: SrsProcess, netns: str | None) -> Step:
    """srsUE in its namespace (created if missing: needs root on the UE host); it stops
    while its eNB does (`Step.down_beside_previous`)."""
    def up() -> None:
        if netns:
            ns = shlex.quote(netns)
            ue.host.run(f"ip netns list | grep -qw {ns} || ip netns add {ns}", timeout_s=10)
        ue.start()
    return Step(Stage.UE_ATTACHED, ue.name, up, ue.stop, ue.is_running, down_beside_previous=True)
