"""The report's verdicts on the paper's claims (`tools/replay/paper.py`), on made-up rounds
whose answer is known: the mixed scenario's reaction of MetBS and its share before the
switch, read as the paper reads its Fig. 9."""

from __future__ import annotations

import numpy as np

from tools.replay.metrics import AgentRuns, Benchmark, Replay, headline
from tools.replay.paper import CLAIMS, Finding
from tools.replay.runner import checkpoints

T, SWITCH = 20_000, 5_000
AT = checkpoints(T)


def runs(name: str, reward: np.ndarray, child: np.ndarray | None = None,
         child_names: tuple[str, ...] = ()) -> AgentRuns:
    zeros = np.zeros((1, T))
    return AgentRuns(name, [0], np.zeros((1, T), np.int64), reward[None, :], zeros, zeros,
                     zeros, (np.full(T, -1) if child is None else child)[None, :].astype(
                         np.int16), list(child_names), np.ones((1, 4)) / 4)


CHANGE_POINT = 2 * SWITCH


def mixed_replay(metbs_turns_at: int) -> Replay:
    """BP-vRAN earns 0.5 a round throughout; BSvBS 0.4 until the switch, then 0.6, so its
    average since round 1 passes BP-vRAN's once 0.1 (t - SWITCH) > 0.1 SWITCH: at
    CHANGE_POINT. MetBS gives BP-vRAN every round until `metbs_turns_at`, BSvBS after."""
    t = np.arange(T)
    bpvran = np.full(T, 0.5)
    bsvbs = np.where(t < SWITCH, 0.4, 0.6)
    child = np.where(t < metbs_turns_at, 0, 1)
    agents = {"bsvbs": runs("bsvbs", bsvbs), "bpvran": runs("bpvran", bpvran),
              "metbs": runs("metbs", np.where(child == 0, bpvran, bsvbs), child,
                            ("bpvran", "bsvbs"))}
    policy = np.zeros((1, len(AT), 4))
    unknown = np.full((1, len(AT)), np.nan)  # no power in these made-up rounds
    bench = Benchmark([0], AT, policy, policy, unknown, np.full(1, np.nan), unknown)
    return Replay({"source": {"scenario": "mixed", "switch_epoch": SWITCH}}, agents, bench)


def finding(replay: Replay, text: str) -> Finding:
    (claim,) = [c for c in CLAIMS if c.text.startswith(text)]
    heads = {name: headline(replay, r) for name, r in replay.agents.items()}
    found = claim.ours(replay, heads)
    assert found is not None
    return found


def test_metbs_reacting_within_1k_rounds_of_the_change_point_holds():
    found = finding(mixed_replay(CHANGE_POINT + 600), "MetBS turns to BSvBS")
    assert found.holds is True and 500 <= found.value <= 1000
    assert "change-point at round 10" in found.detail  # the checkpoint at ~10000


def test_metbs_reacting_late_or_never_does_not_hold():
    late = finding(mixed_replay(CHANGE_POINT + 4000), "MetBS turns to BSvBS")
    assert late.holds is False and late.value > 3500
    never = finding(mixed_replay(T), "MetBS turns to BSvBS")
    assert never.holds is False and "never" in never.detail


def test_without_a_change_point_there_is_nothing_to_react_to():
    replay = mixed_replay(T)
    replay.agents["bsvbs"] = runs("bsvbs", np.full(T, 0.3))  # never out-earns BP-vRAN
    found = finding(replay, "MetBS turns to BSvBS")
    assert found.holds is None and np.isnan(found.value) and "no change-point" in found.detail


def test_the_share_before_the_switch_counts_only_the_rounds_before_it():
    found = finding(mixed_replay(CHANGE_POINT), "MetBS rounds given to BP-vRAN before")
    assert found.value == 100.0 and found.holds is True
    found = finding(mixed_replay(SWITCH // 4), "MetBS rounds given to BP-vRAN before")
    assert found.value == 25.0 and found.holds is False
