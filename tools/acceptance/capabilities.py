"""What a testbed has, read from its config: an acceptance test needs some of these, and a
testbed without one skips the test with the capability's reason (never silently)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hil.config import HilConfig
from hil.testbeds import kind_of


@dataclass(frozen=True)
class Capability:
    has: Callable[[HilConfig], bool]
    lacking: str
    """Why a test is skipped on a testbed without it."""


CAPABILITIES: dict[str, Capability] = {
    "ue_rtctl": Capability(
        lambda cfg: kind_of(cfg).ue_control_endpoint(cfg) is not None,
        "no UE with its own control socket (the patched srsUE's rtctl): UE power caps "
        "need one"),
    "ul_noise_floor": Capability(
        lambda cfg: cfg.vbs.ul_noise_floor(),
        "no UL noise floor (ZMQ samples without vbs.srsran.ul_awgn_snr_db): a UE's power "
        "cannot reach the eNB's SNR"),
    "iperf3": Capability(
        lambda cfg: cfg.traffic.kind == "iperf3",
        "no iperf3 traffic (traffic.kind: none): the vBS makes its own demand"),
    "real_meter": Capability(
        lambda cfg: cfg.meter.kind == "gpm8213" and cfg.meter.resource is not None,
        "no GPM-8213 on this testbed (meter.resource): its watts are modelled"),
    "supply_watts": Capability(
        lambda cfg: cfg.meter.kind in ("gpm8213", "emulated"),
        "no watts of the vBS's supply (meter.kind cpu_model models them from the host's CPU, "
        "which need not follow airtime or MCS)"),
    "rf": Capability(
        lambda cfg: cfg.vbs.over_the_air(),
        "no radios on the air (ZMQ or emulated samples)"),
    "curve": Capability(
        lambda cfg: cfg.vbs.curve_dir is not None,
        "rtctl runs without CURVE (vbs.curve_dir not set)"),
}
"""Every capability a test may need, by name."""


def missing(cfg: HilConfig, needs: tuple[str, ...]) -> list[str]:
    """The reasons `cfg`'s testbed cannot serve a test needing `needs` (empty: it can)."""
    unknown = [name for name in needs if name not in CAPABILITIES]
    if unknown:
        raise ValueError(f"unknown capabilities {unknown}; known: {', '.join(CAPABILITIES)}")
    return [f"{name}: {CAPABILITIES[name].lacking}" for name in needs
            if not CAPABILITIES[name].has(cfg)]
