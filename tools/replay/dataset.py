"""A loader for the public `dataset_dlul.csv` column layout, and a replay source built on it.

The dataset of Ayala-Romero et al. (the BSvBS paper's testbed) has one row per
configuration held about a minute: the thresholds (`selected_mcs_dl/ul`,
`selected_airtime_dl/ul`), the offered load and channel (`traffic_load_dl/ul`,
`cqi_dl/ul`), what was delivered (`thr_dl/ul`) and the power (`pm_power`). We could not
obtain the file; this module only fixes the layout, and nothing in the project claims
results on its data. Assumed units, since the layout does not carry them (its README says
"Average throughput" and nothing more): loads and throughputs (`thr_dl/ul`) in Mb/s,
airtime as a share in [0, 1] (our PRB ratio), power in W.

The file holds several experiments, and the dataset's authors select one before any
analysis (their scripts filter on `cpu_platform`, `fixed_mcs_flag` and `BW`). So does this
loader, with `DatasetFilters`: by default the paper's platform (the NUC, i7-8559U), MCS as
an upper bound (`fixed_mcs_flag` 0: a threshold policy; 1 forced the MCS), 50 PRB (10 MHz)
and any transmission mode `TM` (their scripts keep all). A filter on a column the file does
not have is skipped; one that leaves no row is an error naming the values there are.

`DatasetSource` replays it the way the paper did: a scenario (A, B, C, mixed) gives each
round's demand and CQI; every policy the dataset measured is rated by its measurement
nearest to that context (CQI over 15, load over the largest load measured, Euclidean);
the rate is what was measured, capped by the round's demand; the reward is `hil.reward`'s.
Policies are those of the dataset, matched to the nearest values of a policy space
(the paper's by default); the space's first DL gain stands for the dataset's fixed one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agents.policy_space import PolicySpace
from hil.base.scenarios import make_scenario
from hil.reward import RewardParams, reward
from tools.replay.environments import (
    RewardBlock,
    describe_scenario_source,
    round_contexts,
)
from tools.replay.runner import ReplayError

REQUIRED_COLUMNS = (
    "selected_mcs_dl", "selected_mcs_ul", "selected_airtime_dl", "selected_airtime_ul",
    "traffic_load_dl", "traffic_load_ul", "thr_dl", "thr_ul", "cqi_dl", "cqi_ul", "pm_power",
)
"""The columns this loader needs; others of the layout (bler, txgain, rapl_power, ...) may
be present and are kept."""
FAILED_COLUMN = "failed_experiment"
"""Rows where this is true(-ish) are dropped."""
MATCH_TOLERANCE = {"mcs": 0.5, "airtime": 0.05}
"""How far a measured threshold may be from a policy-space value and still match it."""


PAPER_PLATFORM = "Intel(R) Core(TM) i7-8559U CPU @ 2.70GHz"


@dataclass(frozen=True)
class DatasetFilters:
    """Which experiment of the file to use; None keeps every value of that column."""

    cpu_platform: str | None = PAPER_PLATFORM
    fixed_mcs_flag: int | None = 0
    BW: int | None = 50
    TM: int | None = None

    def describe(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class DlulDataset:
    """The usable rows, each with the index of its policy in `space`."""

    path: Path
    rows: pd.DataFrame
    policy: np.ndarray
    dropped_failed: int
    dropped_off_grid: int
    dropped_by_filter: dict[str, int]


def apply_filters(frame: pd.DataFrame, filters: DatasetFilters, path: Path) -> tuple[
        pd.DataFrame, dict[str, int]]:
    """Keep the rows of the chosen experiment; how many each filter dropped."""
    dropped = {}
    for name, wanted in filters.describe().items():
        if wanted is None or name not in frame.columns:
            continue
        column = frame[name]
        keep = (column.astype(str) == wanted if isinstance(wanted, str)
                else pd.to_numeric(column, errors="coerce") == wanted)
        if not keep.any():
            present = ", ".join(map(str, sorted(column.astype(str).unique())[:8]))
            raise ReplayError(f"{path}: no row has {name} = {wanted!r} (there are: {present}); "
                              f"choose one with --dataset-filter {name}=VALUE, or {name}=any")
        dropped[name] = int((~keep).sum())
        frame = frame[keep.to_numpy()]
    return frame, dropped


def load_dlul(path: Path, space: PolicySpace,
              filters: DatasetFilters = DatasetFilters()) -> DlulDataset:
    """Read, filter and check a `dataset_dlul.csv`; ReplayError names the file, column and
    row."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, keep_default_na=False)  # show "n/a" as written, not NaN
    except FileNotFoundError:
        raise ReplayError(f"{path}: file not found; check --dataset") from None
    except (OSError, ValueError) as exc:
        raise ReplayError(f"{path}: cannot read it as CSV: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ReplayError(f"{path}: missing column(s) {', '.join(missing)}; the dataset_dlul "
                          f"layout needs {', '.join(REQUIRED_COLUMNS)}")
    frame, dropped_by_filter = apply_filters(frame, filters, path)
    dropped_failed = 0
    if FAILED_COLUMN in frame.columns:  # first: a failed row may lack its measurements
        failed = frame[FAILED_COLUMN].astype(str).str.lower().isin(("1", "1.0", "true", "yes"))
        dropped_failed = int(failed.sum())
        frame = frame[~failed.to_numpy()].copy()
    for column in REQUIRED_COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(values.to_numpy(float)) | (values.to_numpy(float) < 0))
        if bad.size:
            raise ReplayError(f"{path}: column {column}, data row {frame.index[bad[0]] + 1}: "
                              f"'{frame[column].iloc[bad[0]]}' is not a finite number >= 0")
        frame[column] = values.astype(float)
    policy = _policy_index(frame, space)
    on_grid = policy >= 0
    frame = frame[on_grid].reset_index(drop=True)
    if frame.empty:
        raise ReplayError(f"{path}: no usable row (failed or not on the policy space's grid)")
    return DlulDataset(path, frame, policy[on_grid], dropped_failed, int((~on_grid).sum()),
                       dropped_by_filter)


def _policy_index(frame: pd.DataFrame, space: PolicySpace) -> np.ndarray:
    """Flat policy index of each row in `space`, -1 where a threshold matches no value."""
    columns = {"dl_max_mcs": ("selected_mcs_dl", "mcs"),
               "dl_prb_ratio": ("selected_airtime_dl", "airtime"),
               "ul_max_mcs": ("selected_mcs_ul", "mcs"),
               "ul_prb_ratio": ("selected_airtime_ul", "airtime")}
    coords, ok = [np.zeros(len(frame), np.int64)], np.ones(len(frame), bool)  # gain: the first
    for f in fields(space)[1:]:
        column, kind = columns[f.name]
        allowed = np.asarray(getattr(space, f.name), float)
        distance = np.abs(frame[column].to_numpy(float)[:, None] - allowed[None, :])
        coords.append(distance.argmin(axis=1))
        ok &= distance.min(axis=1) <= MATCH_TOLERANCE[kind]
    return np.where(ok, np.ravel_multi_index(coords, space.shape), -1)


class DatasetEnvironment:
    """A scenario's contexts, each policy rated by its nearest measurement."""

    def __init__(self, data: DlulDataset, scenario_name: str, seed: int, params: RewardParams,
                 switch_epoch: int = 5000) -> None:
        self.scenario = make_scenario(scenario_name, seed, switch_epoch=switch_epoch)
        self.params = params
        self.policies = np.unique(data.policy)
        """Index in the policy space of each action (actions are the measured policies)."""
        self.n_actions = len(self.policies)
        self.rounds_available = None
        filtered = ", ".join(f"{n} {k} dropped" for k, n in data.dropped_by_filter.items())
        self.description = (f"scenario {scenario_name} contexts, rewards from the nearest "
                            f"measurement in {data.path} ({len(data.rows)} rows, "
                            f"{self.n_actions} policies; filters: {filtered or 'none applied'})")
        rows = data.rows
        self._groups = [np.flatnonzero(data.policy == p) for p in self.policies]
        self._load_scale = max(rows["traffic_load_dl"].max(), rows["traffic_load_ul"].max(), 1e-9)
        self._features = self._scale(rows[["cqi_dl", "cqi_ul", "traffic_load_dl",
                                           "traffic_load_ul"]].to_numpy(float))
        self._thr = rows[["thr_dl", "thr_ul"]].to_numpy(float)
        self._power = rows["pm_power"].to_numpy(float)
        self.idle_power_w = float(self._power.min())
        """No idle measurement in the layout: its lowest power stands in (an upper bound)."""

    def _scale(self, context: np.ndarray) -> np.ndarray:
        return context / np.array([15.0, 15.0, self._load_scale, self._load_scale])

    def block(self, start: int, stop: int) -> RewardBlock:
        _, context, now = round_contexts(self.scenario, start, stop)
        scaled = self._scale(now)
        nearest = np.empty((len(now), self.n_actions), np.int64)
        for action, group in enumerate(self._groups):
            distance = ((scaled[:, None, :] - self._features[None, group, :]) ** 2).sum(axis=2)
            nearest[:, action] = group[distance.argmin(axis=1)]
        dl_rate = np.minimum(self._thr[nearest, 0], now[:, 2:3])
        ul_rate = np.minimum(self._thr[nearest, 1], now[:, 3:4])
        power = self._power[nearest]
        _, _, f = reward(dl_rate, now[:, 2:3], ul_rate, now[:, 3:4], power, self.params)
        return RewardBlock(start, context, now, f, power)


@dataclass(frozen=True)
class DatasetSource:
    path: Path
    scenario: str
    space: PolicySpace
    params: RewardParams
    switch_epoch: int = 5000
    filters: DatasetFilters = DatasetFilters()

    def describe(self) -> dict[str, Any]:
        return describe_scenario_source("dataset", self.scenario, self.switch_epoch, self.space,
                                        self.params, path=str(self.path),
                                        filters=self.filters.describe())

    def build(self, seed: int) -> DatasetEnvironment:
        return DatasetEnvironment(load_dlul(self.path, self.space, self.filters), self.scenario,
                                  seed, self.params, self.switch_epoch)


def parse_filters(items: list[str]) -> DatasetFilters:
    """`--dataset-filter KEY=VALUE` items over the authors' defaults; VALUE `any` drops one."""
    known = DatasetFilters().describe()
    chosen = dict(known)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise ReplayError(f"--dataset-filter {item!r}: expected KEY=VALUE with KEY one of "
                              f"{', '.join(known)} (VALUE `any` keeps every value)")
        if value == "any":
            chosen[key] = None
        elif key == "cpu_platform":
            chosen[key] = value
        else:
            try:
                chosen[key] = int(value)
            except ValueError:
                raise ReplayError(f"--dataset-filter {item!r}: {key} is a whole number") from None
    return DatasetFilters(**chosen)
