"""The testbed/experiment config: one YAML file, validated on load.

Errors name the file and the dotted key (e.g. ``zmq-emulated.yaml: clock.speedup: Input
should be greater than 0``). Relative paths inside a config are relative to the config file,
so a config can be run from any directory.

A config may start with ``extends: PATH`` (relative to itself): it is then that config with
only the keys it gives changed (mappings merged key by key, anything else replaced), and the
other config's relative paths stay relative to the other config's folder. So a lab's own
file holds what differs (its binaries, its hosts) and follows the shipped one as it changes.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, Self

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from agents.policy_space import NAMED_SPACES, PAPER_SPACE, PolicySpace
from agents.registry import AGENTS, agent_params
from drivers.emulated.sshd import Sshd
from hil.base.errors import ConfigError
from hil.base.network import is_network_endpoint
from hil.base.validation import StrictModel, read_yaml, validate
from hil.journal import SEGMENT_ROWS


class ClockConfig(StrictModel):
    """How fast time runs: `realtime` on hardware; `accelerated` runs the emulated vBS's
    TTI clock `speedup` times faster than wall time (CI), so a 1 s round takes 1/speedup s;
    `stepped` (emulated vBS and meter only) makes every round exactly `round_s` of emulated
    time, simulated as fast as the host can, with no waiting: the paper's 50 000 rounds in
    minutes."""

    mode: Literal["realtime", "accelerated", "stepped"] = Field(
        "realtime", description="realtime on hardware; accelerated or stepped: emulated only")
    speedup: float = Field(1.0, gt=0, le=10_000, description="accelerated: emulated seconds "
                           "per wall second")

    @model_validator(mode="after")
    def _realtime_means_one(self) -> ClockConfig:
        if self.mode != "accelerated" and self.speedup != 1.0:
            raise ValueError("speedup only applies with mode: accelerated")
        return self


class ScenarioConfig(StrictModel):
    name: Literal["A", "B", "C", "C-iid", "mixed", "trace"] = Field(
        "A", description="the demand and channel over rounds (hil/base/scenarios.py): A static, "
        "B stationary, C adversarial, C-iid, mixed (B then C), trace (a CSV)")
    trace: Path | None = Field(None, description="trace: a CSV of demand and CQI per round, "
                               "relative to the config file")
    switch_epoch: int = Field(5000, ge=0, description="mixed: B for this many rounds, then C")

    @model_validator(mode="after")
    def _trace_needs_file(self) -> ScenarioConfig:
        if self.name == "trace" and self.trace is None:
            raise ValueError("scenario 'trace' needs `trace: path/to/trace.csv`")
        return self


class DuConfig(StrictModel):
    """A DU whose users are in slices (eMBB, URLLC, mMTC): the emulator serves it and a
    scheduler over users (`metahrl`) expects it; drawn from the task distribution of
    `hil.base.slices` by its size and seed."""

    n_ues: int = Field(..., ge=3, le=200, description="users, at least one per slice")
    seed: int = Field(0, ge=0, description="which DU of the distribution")


class EmulatorConfig(StrictModel):
    calibration: Path = Field(Path("calibration/srsran-zmq.yaml"), description=(
        "the link and power model it runs (`hil fit-power` writes one), relative to the "
        "config file"))
    scenario: ScenarioConfig = ScenarioConfig()
    du: DuConfig | None = Field(None, description="serve several users in slices instead of "
                                "one user in `scenario`")
    scpi_port: int = Field(0, ge=0, le=65535, description="port of the GPM-8213 SCPI twin "
                           "(meter.kind gpm8213 without a resource); 0: any free one")
    startup_timeout_s: float = Field(20.0, gt=0, description="until it reports its ports")


class HostConfig(StrictModel):
    """A testbed machine reached over SSH (key or agent authentication only)."""

    hostname: str = Field(..., min_length=1, description="name or address for SSH")
    port: int = Field(22, ge=1, le=65535, description="its sshd's port")
    username: str = Field(default_factory=getpass.getuser, min_length=1,
                          description="default: the user running hil, as ssh does")
    key_path: Path | None = Field(None, description="a private key file (relative to the "
                                  "config file); None: the agent's or ~/.ssh's keys")
    use_agent: bool = Field(True, description="offer the keys of a running ssh-agent")
    known_hosts_path: Path | None = Field(None, description="default: ~/.ssh/known_hosts")
    trust_unknown_host: bool = Field(False, description="add an unknown host key (first use)")
    state_dir: str | None = Field(None, description="logs and PID files on the host")
    local_sshd: Path | None = Field(
        None, description="this host is the local twin sshd kept in this folder "
        "(drivers.emulated.sshd): hil starts it on `port` unless it runs; key_path and "
        "known_hosts_path default to its files")

    @model_validator(mode="after")
    def _local_sshd_on_loopback(self) -> HostConfig:
        if self.local_sshd is None:
            return self
        if self.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"local_sshd is an sshd on this machine's loopback: hostname must "
                             f"be 127.0.0.1, not {self.hostname!r}")
        return self


class SrsProcessConfig(StrictModel):
    """One srsRAN program on one host."""

    host: str = Field(..., description="a `hosts` entry")
    binary: str = Field(..., min_length=1, description="path (or name on PATH) on that host")
    env: dict[str, str] = Field({}, description="extra environment, e.g. LD_PRELOAD")
    args: list[str] = Field([], description="extra command-line options (`--section.key=value`)")
    start_timeout_s: float = Field(30.0, gt=0, description="until its ready line appears")


class UeProcessConfig(SrsProcessConfig):
    netns: str | None = Field("ue1", description="network namespace of the UE's TUN interface")
    start_timeout_s: float = Field(60.0, gt=0, description="until attached (it reports its IP)")
    ip: str = Field("172.16.0.2", description="the IP srsEPC gives the UE")
    rtctl_bind: str = Field("tcp://127.0.0.1:5556", description=(
        "where the patched srsUE serves rtctl's UE profile (PROTOCOL.md section 14)"))


class RadioConfig(StrictModel):
    """`zmq`: srsRAN's ZMQ virtual radio (no hardware; eNB and UE exchange samples over TCP).
    `uhd`: USRP B210s, picked by serial."""

    kind: Literal["zmq", "uhd"] = Field("zmq", description="zmq: no hardware; uhd: B210s")
    enb_serial: str | None = Field(None, description="uhd: the eNB's B210 serial "
                                   "(`uhd_find_devices`)")
    ue_serial: str | None = Field(None, description="uhd: the UE's B210 serial")
    clock_source: Literal["internal", "external", "gpsdo"] = Field(
        "internal", description="uhd: the B210s' reference clock (external: a 10 MHz input)")
    enb_tx_gain_db: float = Field(80.0, ge=0, le=89.8, description="the B210's TX gain range")
    enb_rx_gain_db: float = Field(40.0, ge=0, le=76, description="the B210's RX gain range")
    ue_tx_gain_db: float = Field(80.0, ge=0, le=89.8, description="the B210's TX gain range")
    ue_rx_gain_db: float = Field(40.0, ge=0, le=76, description="the B210's RX gain range")
    zmq_enb_tx_port: int = Field(2000, ge=1, le=65535, description="zmq: where the eNB sends "
                                 "its samples (the UE's rx_port)")
    zmq_ue_tx_port: int = Field(2001, ge=1, le=65535, description="zmq: where the UE sends "
                                "its samples (the eNB's rx_port)")

    @model_validator(mode="after")
    def _b210_needs_serials(self) -> RadioConfig:
        if self.kind == "uhd" and not (self.enb_serial and self.ue_serial):
            raise ValueError("radio kind uhd needs enb_serial and ue_serial (uhd_find_devices "
                             "lists them)")
        return self


class SrsranConfig(StrictModel):
    """srsEPC, srsENB (patched, see patches/srsRAN_4G) and srsUE, configured from templates."""

    templates: Path = Field(Path("srsran"), description="folder of .conf templates")
    calibration: Path = Field(Path("calibration/srsran-zmq.yaml"), description=(
        "the link and power model fitted to this testbed (`hil fit-power`); replays of its "
        "recorded runs read it"))
    prefix: str | None = Field(None, description=(
        "where `hil srsran build` installed the patched programs on their hosts (bin/, lib/, "
        "its stamp): a `binary` given as a bare name is taken from <prefix>/bin. `~` is the "
        "host user's home; a relative path is from this file's folder (for a host that is "
        "this machine). None: each binary as given, a path or a name on the host's PATH"))
    n_prb: Literal[6, 15, 25, 50, 75, 100] = Field(50, description="the cell's bandwidth in "
                                                   "PRBs (50: 10 MHz)")
    dl_earfcn: int = Field(3350, ge=0, description="the DL carrier (3350: band 7, 2680 MHz)")
    awgn_snr_db: float | None = Field(
        30.0, description="eNB DL channel emulator noise (needed for gain to reach CQI); "
                          "null: off")
    ul_awgn_snr_db: float | None = Field(
        None, description="eNB UL channel emulator: noise at ul_awgn_signal_power_dbfs minus "
        "this (dBFS, after the eNB's rx gain), so the UE's power reaches the UL SNR the eNB "
        "measures (`ul_snr_db` of a round); null: off (a noiseless ZMQ UL reads ~90 dB)")
    ul_awgn_signal_power_dbfs: float = Field(30.0, description="the UL channel emulator's "
                                             "reference signal power")
    rtctl_bind: str = Field("tcp://127.0.0.1:5555", description="the eNB's [rtctl] endpoint")
    max_restarts: int = Field(3, ge=0, description="crashed-process restarts before giving up")
    radio: RadioConfig = RadioConfig()
    epc: SrsProcessConfig
    enb: SrsProcessConfig
    ue: UeProcessConfig

    @model_validator(mode="after")
    def _epc_beside_enb(self) -> SrsranConfig:
        if self.epc.host != self.enb.host:
            raise ValueError(f"epc.host must be the eNB's host {self.enb.host!r}: srsEPC runs "
                             "beside srsENB (S1 over loopback)")
        return self


class ControlSocket(NamedTuple):
    """A socket that takes commands for the vBS: where it binds, on which host."""

    key: str  # the config key that sets it
    endpoint: str
    host: str | None  # the `hosts` entry it binds on (None: this machine)
    curve: bool  # whether the program behind it can do CURVE (`vbs.curve_dir`)


CURVE_FIX = ("make keys with `hil keys DIR`, set `vbs.curve_dir: DIR` and install the vBS's "
             "half with `hil keys --install CONFIG` (docs/operator.md, \"A lab network\")")
PLAINTEXT_FIX = (f"{CURVE_FIX}; or, on a network only the testbed is on, set "
                 "`vbs.allow_plaintext_control: true`")


class VbsCommon(StrictModel):
    """What every kind of vBS has: where it runs and how the controller reaches it.

    Each kind (the union `VbsConfig`) adds its own section and says what it can do; its
    bring-up, checks and sweep conditions are in the module `testbed_module` names (a
    `hil.testbeds.TestbedKind`), so the engine, `hil check` and `hil collect` ask the kind
    instead of testing `kind`.
    """

    host: str | None = Field(None, description="a `hosts` entry to run on; none: this machine")
    control_endpoint: str = Field("tcp://127.0.0.1:0", description=(
        "the emulated vBS's rtctl socket; port 0: it binds a free port and reports it (no "
        "clashes between runs)"))
    timeout_s: float = Field(0.5, gt=0, le=60, description="a control reply later than "
                             "this is lost (then retried)")
    retries: int = Field(3, ge=0, le=100, description="resends of a lost control request "
                         "before the round is invalid")
    give_up_after_invalid_rounds: int = Field(
        30, ge=1, description="stop the run after this many invalid rounds in a row")
    curve_dir: Path | None = Field(None, description=(
        "the controller's CURVE keys (`hil keys DIR`): rtctl encrypted, the vBS's public key "
        "pinned, only authorized controllers admitted; required for a control socket bound "
        "off loopback"))
    server_curve_dir: str | None = Field(None, description=(
        "the vBS's half of the keys on its host (server keypair, authorized_clients/), "
        "which `hil keys --install CONFIG` fills; `~` is that host user's home. None: "
        "`curve_dir`'s own path (the vBS on this machine)"))
    allow_plaintext_control: bool = Field(False, description=(
        "let a control socket bound off loopback run without CURVE (anyone who reaches it "
        "can set or reset the vBS); `hil check` warns on every run"))

    testbed_module: ClassVar[str]
    """The module whose `TESTBED` brings this kind up (hil/testbeds/)."""
    serves_meter: ClassVar[bool] = False
    """It models its own power: a meter socket (meter.kind emulated) and a GPM-8213 SCPI twin."""
    steps_clock: ClassVar[bool] = False
    """Its clock can be stepped (clock.mode stepped)."""
    has_ue: ClassVar[bool] = False
    """A UE that iperf3 traffic can reach (traffic.kind iperf3)."""

    @model_validator(mode="after")
    def _off_loopback_needs_curve(self) -> Self:
        """A control socket another machine can reach takes commands only over CURVE, unless
        plaintext is allowed in so many words."""
        if self.allow_plaintext_control:
            return self
        for socket in self.plaintext_on_network():
            if not socket.curve:
                raise ValueError(
                    f"{socket.key} {socket.endpoint} is reachable from the network, and this "
                    "program's rtctl has no CURVE: bind it to 127.0.0.1 (hil reaches it on its "
                    "host), or on a network only the testbed is on set "
                    "`vbs.allow_plaintext_control: true`")
            raise ValueError(
                f"{socket.key} {socket.endpoint} is reachable from the network, so anyone "
                "there could set the vBS's thresholds or reset it; vbs.curve_dir is not "
                f"set: {PLAINTEXT_FIX}")
        return self

    def control_sockets(self) -> list[ControlSocket]:
        """Every socket that takes commands for this vBS."""
        return []

    def plaintext_on_network(self) -> list[ControlSocket]:
        """The control sockets another machine can reach that run without CURVE (refused on
        load unless `allow_plaintext_control`)."""
        return [s for s in self.control_sockets() if is_network_endpoint(s.endpoint)
                and not (s.curve and self.curve_dir is not None)]

    def server_host(self) -> str | None:
        """The `hosts` entry the rtctl server (the vBS) runs on; None: this machine."""
        return self.host

    def over_the_air(self) -> bool:
        """Its radios transmit (B210s), rather than exchanging samples in software."""
        return False

    def ul_noise_floor(self) -> bool:
        """Its uplink has a noise floor, so a UE's transmit power reaches the eNB's SNR:
        radios on the air, or a UL channel emulator adding noise."""
        return self.over_the_air()

    def server_keys_at(self, home: str) -> str | None:
        """The vBS's key folder on its host, a leading ``~`` made `home` (programs do not
        expand it); None without CURVE."""
        if self.curve_dir is None:
            return None
        folder = self.server_curve_dir or str(self.curve_dir)
        return f"{home.rstrip('/')}/{folder[2:]}" if folder.startswith("~/") else folder

    @property
    def calibration(self) -> Path:
        """The link and power model of this testbed (the emulated vBS runs it; replays of a
        recorded run and comparisons read it)."""
        raise NotImplementedError

    @property
    def du(self) -> DuConfig | None:
        """The DU of users in slices it serves, if it says (a scheduler over users needs it)."""
        return None

    def hosts_used(self) -> dict[str, str | None]:
        """The `hosts` entries it runs on, by the key that names them."""
        return {"vbs.host": self.host}

    def local_paths(self) -> list[tuple[str, Path | None]]:
        """Files and folders on this machine it needs, by key."""
        return [("vbs.curve_dir", self.curve_dir)]

    def demand_scenario(self, traffic: TrafficConfig) -> ScenarioConfig:
        """The scenario whose demand its rounds serve."""
        return traffic.scenario

    def resolved(self, base: Path) -> Self:
        """Its relative paths taken from `base` (the config file's folder)."""
        return self.model_copy(update={"curve_dir": _under(base, self.curve_dir)})


class EmulatedVbsConfig(VbsCommon):
    """The emulated vBS (drivers/emulated): one user in a scenario, or a DU of users in
    slices (`emulator.du`); it runs the calibration's link and power model."""

    kind: Literal["emulated"] = "emulated"
    emulator: EmulatorConfig = EmulatorConfig()

    testbed_module: ClassVar[str] = "hil.testbeds.emulated"
    serves_meter: ClassVar[bool] = True
    steps_clock: ClassVar[bool] = True

    def control_sockets(self) -> list[ControlSocket]:
        return [ControlSocket("vbs.control_endpoint", self.control_endpoint, self.host, True)]

    @property
    def calibration(self) -> Path:
        return self.emulator.calibration

    @property
    def du(self) -> DuConfig | None:
        return self.emulator.du

    def demand_scenario(self, traffic: TrafficConfig) -> ScenarioConfig:
        return self.emulator.scenario

    def resolved(self, base: Path) -> Self:
        emu = self.emulator
        scenario = emu.scenario.model_copy(update={"trace": _under(base, emu.scenario.trace)})
        emu = emu.model_copy(update={"calibration": _under(base, emu.calibration),
                                     "scenario": scenario})
        return super().resolved(base).model_copy(update={"emulator": emu})


class SrsranVbsConfig(VbsCommon):
    """Real srsRAN: srsEPC, the patched srsENB and srsUE over SSH (`srsran`)."""

    kind: Literal["srsran"]
    srsran: SrsranConfig

    testbed_module: ClassVar[str] = "hil.testbeds.srsran"
    has_ue: ClassVar[bool] = True

    @model_validator(mode="before")
    @classmethod
    def _without_an_emulator(cls, data: Any) -> Any:
        """Runs recorded before each kind had its own section (schema v7 and older) dumped an
        `emulator` section for srsRAN too: it never applied, and is dropped."""
        if isinstance(data, dict) and "emulator" in data:
            data = {k: v for k, v in data.items() if k != "emulator"}
        return data

    def control_sockets(self) -> list[ControlSocket]:
        srs = self.srsran
        return [ControlSocket("vbs.srsran.rtctl_bind", srs.rtctl_bind, srs.enb.host, True),
                ControlSocket("vbs.srsran.ue.rtctl_bind", srs.ue.rtctl_bind, srs.ue.host, False)]

    def server_host(self) -> str | None:
        return self.srsran.enb.host

    def over_the_air(self) -> bool:
        return self.srsran.radio.kind == "uhd"

    def ul_noise_floor(self) -> bool:
        return self.over_the_air() or self.srsran.ul_awgn_snr_db is not None

    @property
    def calibration(self) -> Path:
        return self.srsran.calibration

    def hosts_used(self) -> dict[str, str | None]:
        return {**super().hosts_used(),
                **{f"vbs.srsran.{name}.host": getattr(self.srsran, name).host
                   for name in ("epc", "enb", "ue")}}

    def local_paths(self) -> list[tuple[str, Path | None]]:
        return [("vbs.srsran.templates", self.srsran.templates), *super().local_paths()]

    def resolved(self, base: Path) -> Self:
        srs = self.srsran
        prefix = srs.prefix
        if prefix is not None and not prefix.startswith(("/", "~")):
            prefix = str(base / prefix)
        srs = srs.model_copy(update={"templates": _under(base, srs.templates), "prefix": prefix,
                                     "calibration": _under(base, srs.calibration)})
        return super().resolved(base).model_copy(update={"srsran": srs})


def _vbs_kind(data: Any) -> str:
    kind = data.get("kind", "emulated") if isinstance(data, dict) else getattr(data, "kind", "")
    return f"kind={kind}"


VbsConfig = Annotated[
    Annotated[EmulatedVbsConfig, Tag("kind=emulated")]
    | Annotated[SrsranVbsConfig, Tag("kind=srsran")],
    Discriminator(_vbs_kind, custom_error_type="vbs_kind",
                  custom_error_message="vbs.kind must be emulated or srsran")]
"""The kinds of vBS: a new kind is a class here and its module in hil/testbeds/. (The tag,
`kind=...`, is left out of the key an error names: hil.base.validation.dotted.)"""


class TrafficConfig(StrictModel):
    """Offered load through the LTE link. `none`: whatever else runs (the emulated vBS makes
    its own from its scenario). `iperf3`: UDP flows, DL into the UE's namespace and UL from
    it, at the demand of `scenario` each round (A: the paper's 32/23 Mb/s)."""

    kind: Literal["none", "iperf3"] = Field("none", description="iperf3: UDP flows at the "
                                            "scenario's demand (needs a UE)")
    scenario: ScenarioConfig = ScenarioConfig()
    core_address: str = Field("172.16.0.1", description="srsEPC's SGi address (srs_spgw_sgi)")
    port: int = Field(5201, ge=1, le=65534, description="iperf3 servers' port (DL), and "
                      "the next one (UL)")
    flow_limit_s: int = Field(3600, ge=1, description=(
        "a flow ends by itself after this long (so a dead controller leaves no flood for "
        "longer); flows are renewed shortly before, a restart through a full link that "
        "may cost a direction its flow (drivers/traffic/iperf3.py)"))


class HostMetricsConfig(StrictModel):
    """CPU of the host and of the eNB process, and RAPL energy, per round (psutil; this
    machine, so only when the eNB runs here)."""

    enabled: bool = Field(False, description="record host_cpu, enb_cpu and RAPL per round")
    process: str = Field("srsenb", description="the eNB's process name")
    ue_process: str | None = Field("srsue", description="the UE's process, where it runs on "
                                   "this machine too (a ZMQ testbed); None: not measured")


class MeterConfig(StrictModel):
    """`emulated`: the emulated vBS's own meter socket. `gpm8213`: a GW-Instek GPM-8213 over
    pyvisa-py at `resource` (`TCPIP0::host::23::SOCKET` or `ASRL/dev/ttyACM0::INSTR`); with
    the emulated vBS and no resource, its SCPI twin, so the real driver runs end to end.
    `cpu_model`: no meter; watts modelled from this machine's CPU load (a ZMQ workstation)."""

    kind: Literal["emulated", "gpm8213", "cpu_model"] = Field(
        "emulated", description="where the watts come from (above)")
    endpoint: str = Field("tcp://127.0.0.1:0", description="emulated: the meter socket; "
                          "port 0: the emulator reports it")
    resource: str | None = Field(None, description=(
        "gpm8213: its VISA resource: TCPIP0::HOST::23::SOCKET on the LAN, "
        "ASRL/dev/ttyACM0::INSTR over USB; None: the emulated vBS's SCPI twin"))
    poll_s: float = Field(1.0, gt=0, le=60, description="gpm8213: seconds between readings "
                          "(it also reads at every round's edges)")
    min_coverage: float = Field(0.5, ge=0, le=1, description="gpm8213: a round whose valid "
                                "readings stand for less of it than this is invalid")
    use_integrator: bool = Field(False, description="gpm8213: a round's watts from the "
                                 "unit's energy integrator instead of averaged readings")
    timeout_s: float = Field(0.5, gt=0, le=60, description="a reply later than this is lost")
    # cpu_model (no meter on a workstation; drivers/host/cpu_power.py): watts modelled
    # as idle_w + per_core_w * busy cores of this machine + radio_w
    idle_w: float = Field(6.0, ge=0, description="cpu_model: watts of the idle host")
    per_core_w: float = Field(2.5, ge=0, description="cpu_model: watts per busy core")
    radio_w: float = Field(3.0, ge=0, description="the B210's amplifier draws a fixed ~3 W")
    process: str | None = Field(None, description="cpu_model: count only this process's CPU "
                                "(e.g. srsenb where the UE shares the host); None: the host's")


class AgentConfig(StrictModel):
    """The learner: any agent of `agents/registry.py`, with its own parameters in `params`
    (e.g. `metbs`: `children: [bsvbs, bpvran]`; `bpvran`: `max_points`)."""

    name: str = Field("bsvbs", description="an agent of agents/registry.py (`hil run "
                      "--agent NAME`)")
    horizon: int | None = Field(None, gt=0, description="T the agent tunes for (default: rounds)")
    gamma: float | None = Field(None, gt=0, le=1, description="BSvBS: exploration, overrides T")
    params: dict[str, Any] = Field(default_factory=dict, description="the agent's own options")

    @field_validator("name")
    @classmethod
    def _known_agent(cls, name: str) -> str:
        if name not in AGENTS:
            raise ValueError(f"unknown agent {name!r}; known agents: {', '.join(sorted(AGENTS))}")
        return name

    @model_validator(mode="after")
    def _known_options(self) -> AgentConfig:
        known = agent_params(self.name)
        given = [*self.params, *(["gamma"] if self.gamma is not None else [])]
        unknown = [key for key in given if key not in known]
        if unknown:
            raise ValueError(f"agent {self.name} has no option {', '.join(unknown)}; its "
                             f"options: {', '.join(known) or 'none'}")
        return self


class RewardConfig(StrictModel):
    delta: float = Field(1.5, ge=0, description="weight of normalised power against utility")
    power_min_w: float = Field(9.0, ge=0, description="power that counts as 0 in the reward")
    power_max_w: float = Field(16.0, gt=0, description="power that counts as 1 in the reward")

    @model_validator(mode="after")
    def _ordered(self) -> RewardConfig:
        if self.power_max_w <= self.power_min_w:
            raise ValueError("power_max_w must be greater than power_min_w")
        return self


class RecordingConfig(StrictModel):
    out_dir: Path = Field(Path("runs"), description="runs go in <out_dir>/<name>-<time>/, "
                          "relative to where hil runs")
    checkpoint_every: int = Field(500, ge=1, description="rounds between checkpoints")
    segment_rows: int = Field(SEGMENT_ROWS, ge=1, description="rows of a live run's journal "
                              "compacted into each Parquet segment (hil/journal.py)")
    plot: bool = Field(True, description="summary.png at the end of a run")


class HilConfig(StrictModel):
    name: str = Field(..., min_length=1, description="names its runs (<name>-<time>)")
    seed: int = Field(0, ge=0, description="the agent's and the emulator's randomness")
    rounds: int = Field(1000, ge=1, description="rounds a run plays (`--rounds`)")
    round_s: float = Field(1.0, gt=0, le=3600, description="a round of the testbed's time: "
                           "one policy, one reward")
    clock: ClockConfig = ClockConfig()
    vbs: VbsConfig = EmulatedVbsConfig()
    meter: MeterConfig = MeterConfig()
    agent: AgentConfig = AgentConfig()
    policy_space: PolicySpace = Field(PAPER_SPACE, description=(
        "the policies an agent picks from: `paper` (1080), `paper16`, or the five lists "
        "dl_max_mcs, dl_prb_ratio, ul_max_mcs, ul_prb_ratio, dl_gain_db"))
    reward: RewardConfig = RewardConfig()
    recording: RecordingConfig = RecordingConfig()
    traffic: TrafficConfig = TrafficConfig()
    host_metrics: HostMetricsConfig = HostMetricsConfig()
    hosts: dict[str, HostConfig] = {}

    @model_validator(mode="after")
    def _hosts_are_declared(self) -> HilConfig:
        known = ", ".join(self.hosts) or "none declared"
        for key, host in self.vbs.hosts_used().items():
            if host is not None and host not in self.hosts:
                raise ValueError(f"{key} {host!r} is not in `hosts` ({known})")
        return self

    @model_validator(mode="after")
    def _the_vbs_can_do_it(self) -> HilConfig:
        """What the meter, clock, traffic and agent ask of the vBS, it can do."""
        vbs = self.vbs
        if self.meter.kind == "emulated" and not vbs.serves_meter:
            raise ValueError(f"meter.kind emulated needs the emulated vBS; with {vbs.kind} use "
                             "gpm8213 (a real meter) or cpu_model")
        if self.meter.kind == "gpm8213" and not self.meter.resource and not vbs.serves_meter:
            raise ValueError("meter.resource is required for a real GPM-8213, e.g. "
                             "TCPIP0::192.168.1.50::23::SOCKET")
        if self.clock.mode == "stepped" and not (vbs.steps_clock and self.meter.kind == "emulated"):
            raise ValueError("clock.mode stepped needs vbs.kind emulated and meter.kind "
                             "emulated (only the emulator's clock can be stepped); use "
                             "accelerated with a speedup for other meters")
        if self.traffic.kind == "iperf3" and not vbs.has_ue:
            raise ValueError(f"traffic kind iperf3 needs a UE to send to (vbs.kind srsran); "
                             f"vbs.kind {vbs.kind} has none")
        if ("du" in agent_params(self.agent.name) and "du" not in self.agent.params
                and vbs.du is None):
            raise ValueError(f"agent {self.agent.name} caps the users of a DU: give "
                             "vbs.emulator.du {n_ues: N, seed: S} (the emulator serves it), or "
                             "agent.params.du for a real vBS; see "
                             "testbed_configs/zmq-emulated-slices.yaml")
        return self

    @property
    def demand_scenario(self) -> ScenarioConfig:
        """The scenario whose demand the rounds serve (the emulator's, or the traffic's)."""
        return self.vbs.demand_scenario(self.traffic)

    @property
    def period_s(self) -> float:
        """Wall-clock length of a round; 0 when stepped (a round takes what it takes)."""
        return 0.0 if self.clock.mode == "stepped" else self.round_s / self.clock.speedup

    @field_validator("policy_space", mode="before")
    @classmethod
    def _paper_by_name(cls, value: object) -> object:
        return NAMED_SPACES.get(value, value) if isinstance(value, str) else value


def _under(base: Path, path: Path | None) -> Path | None:
    """A path from the config file: `~` expanded, relative ones taken from `base`."""
    if path is None:
        return None
    path = Path(path).expanduser()
    return path if path.is_absolute() else base / path


def _host_paths(host: HostConfig, base: Path) -> HostConfig:
    """A host's files from `base`; a local twin sshd's keys default to those in its folder
    (as drivers.emulated.sshd lays them out)."""
    local = _under(base, host.local_sshd)
    key, known = _under(base, host.key_path), _under(base, host.known_hosts_path)
    if local is not None:
        twin = Sshd(local)
        key, known = key or twin.user_key, known or twin.known_hosts
    return host.model_copy(update={"local_sshd": local, "key_path": key,
                                   "known_hosts_path": known})


def resolve_paths(cfg: HilConfig, base: Path) -> HilConfig:
    """Make every relative path in ``cfg`` relative to ``base`` (the config file's folder)."""
    hosts = {name: _host_paths(host, base) for name, host in cfg.hosts.items()}
    traffic_scenario = cfg.traffic.scenario
    traffic = cfg.traffic.model_copy(update={"scenario": traffic_scenario.model_copy(
        update={"trace": _under(base, traffic_scenario.trace)})})
    return cfg.model_copy(update={"hosts": hosts, "traffic": traffic,
                                  "vbs": cfg.vbs.resolved(base)})


def local_paths(cfg: HilConfig) -> list[tuple[str, Path]]:
    """The files and folders on this machine that the config names for its testbed, by key
    (the calibration and traces have checks of their own)."""
    paths: list[tuple[str, Path | None]] = []
    for name, host in cfg.hosts.items():
        if host.local_sshd is not None:
            continue  # its keys are made when hil starts it
        paths += [(f"hosts.{name}.key_path", host.key_path),
                  (f"hosts.{name}.known_hosts_path", host.known_hosts_path)]
    paths += cfg.vbs.local_paths()
    return [(key, path) for key, path in paths if path is not None]


def apply_overrides(data: dict, overrides: dict[str, object]) -> dict:
    """Set dotted keys (``agent.name``) from the command line; None means 'not given'."""
    for dotted_key, value in overrides.items():
        if value is None:
            continue
        *parents, last = dotted_key.split(".")
        node = data
        for part in parents:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[last] = value
    return data


def load_config(path: Path | str, overrides: dict[str, object] | None = None) -> HilConfig:
    """Read (following `extends`), apply command-line overrides (dotted keys), validate,
    resolve relative paths."""
    path = Path(path)
    overrides = overrides or {}
    data = _switch_agent(_read_extended(path, ()), overrides.get("agent.name"))
    data = apply_overrides(data, overrides)
    return resolve_paths(validate(path, HilConfig, data), path.resolve().parent)


def _switch_agent(data: dict, name: object) -> dict:
    """The config with its agent replaced by `name` (`hil run --agent`): the file's options
    (`agent.params`, `agent.gamma`) were written for its own agent and do not apply to
    another, so they are dropped; the horizon, which any agent takes, is kept."""
    agent = data.get("agent")
    if name is None or not isinstance(agent, dict) or agent.get("name", "bsvbs") == name:
        return data
    kept = {"horizon": agent["horizon"]} if agent.get("horizon") is not None else {}
    return {**data, "agent": kept}


def _read_extended(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """The file's mapping on top of the config it `extends` (loaded whole, its relative
    paths resolved against its own folder)."""
    data = read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str) or not parent:
        raise ConfigError(str(path), "extends", "must be the path of another config file")
    parent_path = _under(path.resolve().parent, Path(parent))
    assert parent_path is not None
    here = path.resolve()
    if parent_path.resolve() in (*chain, here):
        cycle = " -> ".join(str(p) for p in (*chain, here, parent_path.resolve()))
        raise ConfigError(str(path), "extends", f"configs extend each other in a circle: {cycle}")
    base_data = _read_extended(parent_path, (*chain, here))
    base = resolve_paths(validate(parent_path, HilConfig, base_data),
                         parent_path.resolve().parent)
    return merge(base.model_dump(mode="json"), data)


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` on top: mappings merged key by key, anything else replaced."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_from_dict(data: dict, source: str = "run.json") -> HilConfig:
    """Re-validate a config stored in a run directory (paths there are already absolute)."""
    return validate(source, HilConfig, data)
