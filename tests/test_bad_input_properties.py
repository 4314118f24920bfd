"""Bad input, generated (hypothesis): whatever a controller, a script or a careless edit sends,
the vBS and the config loader refuse it with an error that names the key, and nothing of a
refused request is applied."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_emulated_vbs import CALIBRATION, FakeClock
from testbed_yaml import SHIPPED

from drivers.emulated.vbs import EmulatedVbs
from drivers.rtctl.messages import ThresholdUpdate
from drivers.rtctl.server import RtctlServer
from hil.base.errors import ConfigError, ThresholdError
from hil.base.scenarios import make_scenario
from hil.config import load_config

THRESHOLD_KEYS = ("dl_max_mcs", "ul_max_mcs", "dl_prb_ratio", "ul_prb_ratio", "dl_gain_db", "ue")

anything = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=3),
    max_leaves=6)
"""Any JSON value (JSON itself has no NaN or infinity)."""

ue_entries = st.dictionaries(
    st.sampled_from(["70", "71", "0", "65524", "x", "007"]),
    st.none() | st.dictionaries(st.sampled_from(["dl_max_prb", "ul_max_prb", "weight", "mcs"]),
                                anything, max_size=3),
    max_size=2)
thresholds = st.dictionaries(
    st.sampled_from([*THRESHOLD_KEYS, "dl_max_prb", "gain"]),
    anything | ue_entries, max_size=4)


class Session:
    def __init__(self) -> None:
        self.vbs = EmulatedVbs(CALIBRATION, make_scenario("A", 0), seed=0, clock=FakeClock())
        self.server = RtctlServer("inproc://unused", self.vbs)
        self.seq = 0

    def send(self, request: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        raw = json.dumps({"v": 1, "sid": "prop", "seq": self.seq, **request}).encode()
        return json.loads(self.server.handle(raw))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(thresholds)
def test_a_set_is_applied_whole_or_refused_naming_the_key_and_changing_nothing(data):
    session = Session()
    session.send({"op": "set", "thresholds": {"dl_max_mcs": 20, "ue": {"70": {"dl_max_prb": 9}}}})
    before = session.vbs.thresholds()
    reply = session.send({"op": "set", "thresholds": data})
    after = session.vbs.thresholds()
    try:
        update = ThresholdUpdate.parse(data)
    except ThresholdError as exc:  # the client's own check refuses what the vBS refuses
        assert reply["ok"] is False and reply["error"]["code"] == "bad_threshold"
        key = reply["error"]["key"]
        assert key == exc.key and key.startswith("thresholds")
        assert after == before
        return
    assert reply["ok"] is True
    assert after == before.merged(update)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | anything.map(lambda v: json.dumps(v).encode()))
def test_any_frame_gets_a_reply_and_garbage_changes_nothing(raw):
    session = Session()
    before = session.vbs.thresholds()
    reply = json.loads(session.server.handle(raw))
    assert reply["ok"] is False or raw.startswith(b"{")
    if reply["ok"] is False:
        assert reply["error"]["code"] and reply["error"]["message"]
        assert session.vbs.thresholds() == before


CONFIG_KEYS = ("rounds", "seed", "round_s", "clock.speedup", "vbs.timeout_s", "vbs.retries",
               "meter.poll_s", "reward.delta", "reward.power_max_w", "recording.checkpoint_every",
               "agent.name", "policy_space.dl_max_mcs", "vbs.emulator.scenario.name")
bad_values = (st.text(min_size=1, max_size=5) | st.integers(-10**9, 0)
              | st.lists(st.integers(), max_size=2) | st.floats() | st.booleans() | st.none())


def _set(data: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[leaf] = value


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(CONFIG_KEYS), value=bad_values)
@example(key="reward.delta", value=float("inf"))  # once accepted: found by CI
def test_a_bad_config_value_is_refused_naming_the_file_and_the_key(tmp_path_factory, key, value):
    data = yaml.safe_load(SHIPPED.read_text())
    if key == "policy_space.dl_max_mcs":
        data["policy_space"] = {"dl_gain_db": [0.0], "dl_max_mcs": [27], "dl_prb_ratio": [1.0],
                                "ul_max_mcs": [23], "ul_prb_ratio": [1.0]}
    _set(data, key, value)
    path = Path(tmp_path_factory.mktemp("cfg")) / "testbed.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        load_config(path)
    except ConfigError as exc:
        message = str(exc)
        assert str(path) in message
        assert key.split(".")[-1] in message or key.split(".")[0] in message, message
        return
    # accepted: only if the value was a valid one after all
    assert value is not None and not (isinstance(value, float) and not math.isfinite(value))
