"""Environment processes: traffic demand and channel quality per epoch (one round of env time).

The paper's scenarios (Kalntis et al., Sec. VI-A) plus a replayable trace:

- ``A`` static: d_d = 32, d_u = 23 Mb/s, CQI 15 both ways;
- ``B`` stationary: d_d ~ U(29, 32), d_u ~ U(20, 23), CQI ~ U(1, 3);
- ``C`` adversarial ping-pong: odd rounds (1-based) as B but CQI ~ U(13, 15), even rounds
  d ~ U(0.01, 1) and CQI ~ U(1, 3);
- ``C-iid``: the same two kinds of round, the kind drawn i.i.d. (1/2 each) every round, so
  the last round no longer tells the next (ours; the paper has only the ping-pong);
- ``mixed``: B for the first ``switch_epoch`` epochs, then C;
- ``trace``: rows of a CSV (``dl_demand_mbps, ul_demand_mbps, dl_cqi, ul_cqi``), cycled.

Epoch ``k`` is the same whatever range it is asked in (draws come from per-block generators
seeded by ``(seed, block)``), so the emulator, which asks for whatever epochs a window spans,
and the offline replays, which ask for thousands at once, see one and the same environment.
CQI is continuous here; the model maps it to SNR and the UE reports it quantised.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from hil.base.errors import ConfigError

_BLOCK = 1024
SCENARIOS = ("A", "B", "C", "C-iid", "mixed", "trace")


@dataclass(frozen=True)
class Environment:
    """Per-epoch arrays, all of one length: what the vBS faces, not what the agent sees."""

    dl_demand_mbps: np.ndarray
    ul_demand_mbps: np.ndarray
    dl_cqi: np.ndarray
    ul_cqi: np.ndarray

    def __len__(self) -> int:
        return len(self.dl_demand_mbps)

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> Environment:
        """The same epochs with `fn` applied to every array (a slice, a reshape)."""
        return Environment(*(fn(np.asarray(getattr(self, f))) for f in _FIELDS))


class Scenario(Protocol):
    name: str

    def epochs(self, start: int, stop: int) -> Environment:
        """The environment of epochs ``start .. stop-1`` (deterministic for a given seed)."""
        ...


def _uniform(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    return rng.uniform(low, high, n)


class _BlockScenario:
    """Draws epochs in blocks of 1024 from generators seeded by (seed, block)."""

    name = "?"

    def __init__(self, seed: int) -> None:
        self.seed = seed
        # The emulator asks for the same block at every request of a round: keep a few.
        self._block = lru_cache(maxsize=4)(self._block)

    def _block(self, block: int) -> Environment:
        rng = np.random.default_rng([self.seed, block])
        first = block * _BLOCK
        return self._draw(rng, np.arange(first, first + _BLOCK))

    def _draw(self, rng: np.random.Generator, epoch: np.ndarray) -> Environment:
        raise NotImplementedError

    def epochs(self, start: int, stop: int) -> Environment:
        if stop <= start:
            empty = np.empty(0)
            return Environment(empty, empty, empty, empty)
        blocks = [self._block(b) for b in range(start // _BLOCK, (stop - 1) // _BLOCK + 1)]
        offset = start - (start // _BLOCK) * _BLOCK
        sl = slice(offset, offset + stop - start)
        return Environment(
            *(np.concatenate([getattr(b, f) for b in blocks])[sl] for f in _FIELDS)
        )


_FIELDS = ("dl_demand_mbps", "ul_demand_mbps", "dl_cqi", "ul_cqi")


class StaticScenario(_BlockScenario):
    name = "A"

    def _draw(self, rng: np.random.Generator, epoch: np.ndarray) -> Environment:
        n = len(epoch)
        return Environment(np.full(n, 32.0), np.full(n, 23.0), np.full(n, 15.0), np.full(n, 15.0))


def _stationary(rng: np.random.Generator, n: int, cqi_low: float, cqi_high: float) -> Environment:
    return Environment(
        _uniform(rng, 29, 32, n),
        _uniform(rng, 20, 23, n),
        _uniform(rng, cqi_low, cqi_high, n),
        _uniform(rng, cqi_low, cqi_high, n),
    )


class StationaryScenario(_BlockScenario):
    name = "B"

    def _draw(self, rng: np.random.Generator, epoch: np.ndarray) -> Environment:
        return _stationary(rng, len(epoch), 1, 3)


class AdversarialScenario(_BlockScenario):
    """Ping-pong: epoch 0 is round 1 (odd: high demand, good channel)."""

    name = "C"

    def _draw(self, rng: np.random.Generator, epoch: np.ndarray) -> Environment:
        good, poor = draw_kinds(rng, len(epoch))
        good_round = self._good_rounds(rng, epoch)
        return Environment(
            *(np.where(good_round, getattr(good, f), getattr(poor, f)) for f in _FIELDS)
        )

    def _good_rounds(self, rng: np.random.Generator, epoch: np.ndarray) -> np.ndarray:
        return epoch % 2 == 0  # odd rounds, counted from 1


class IidAdversarialScenario(AdversarialScenario):
    """C's two kinds of round, each round's kind a fair coin."""

    name = "C-iid"

    def _good_rounds(self, rng: np.random.Generator, epoch: np.ndarray) -> np.ndarray:
        return rng.random(len(epoch)) < 0.5


def draw_kinds(rng: np.random.Generator, n: int) -> tuple[Environment, Environment]:
    """`n` epochs of each of scenario C's kinds of round: good (high demand, CQI 13-15) and
    poor (demand below 1 Mb/s, CQI 1-3)."""
    good = _stationary(rng, n, 13, 15)
    poor = Environment(
        _uniform(rng, 0.01, 1, n), _uniform(rng, 0.01, 1, n),
        _uniform(rng, 1, 3, n), _uniform(rng, 1, 3, n),
    )
    return good, poor


class KindsOfC(_BlockScenario):
    """Both kinds of C's rounds for every epoch: an adaptive adversary (the replay's
    `C-adaptive`) picks one per round after seeing the learner."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.name = "C-adaptive"

    def _draw(self, rng: np.random.Generator, epoch: np.ndarray) -> Environment:
        good, poor = draw_kinds(rng, len(epoch))
        return Environment(*(np.stack([getattr(good, f), getattr(poor, f)], axis=1)
                             for f in _FIELDS))


class MixedScenario(_BlockScenario):
    """B for the first ``switch_epoch`` epochs, then C (the paper's Fig. 9: 5k then 45k)."""

    name = "mixed"

    def __init__(self, seed: int, switch_epoch: int = 5000) -> None:
        super().__init__(seed)
        self._b = StationaryScenario(seed)
        self._c = AdversarialScenario(seed + 1)
        self.switch_epoch = switch_epoch

    def _block(self, block: int) -> Environment:
        first = block * _BLOCK
        b, c = self._b._block(block), self._c._block(block)
        before = np.arange(first, first + _BLOCK) < self.switch_epoch
        return Environment(*(np.where(before, getattr(b, f), getattr(c, f)) for f in _FIELDS))


class TraceScenario:
    """Replays a recorded environment, one CSV row per epoch, cycling at the end."""

    name = "trace"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            with self.path.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
        except OSError as exc:
            raise ConfigError(str(path), "", f"cannot read the trace: {exc.strerror}") from exc
        missing = [f for f in _FIELDS if not rows or f not in rows[0]]
        if missing:
            raise ConfigError(
                str(path), missing[0],
                f"the trace needs a header with columns {', '.join(_FIELDS)} and at least one row",
            )
        try:
            self._data = {f: np.array([float(r[f]) for r in rows]) for f in _FIELDS}
        except ValueError as exc:
            raise ConfigError(str(path), "", f"non-numeric value in the trace: {exc}") from exc
        for f in _FIELDS:
            if not np.all(np.isfinite(self._data[f])) or np.any(self._data[f] < 0):
                raise ConfigError(str(path), f, "values must be finite and >= 0")

    def epochs(self, start: int, stop: int) -> Environment:
        idx = np.arange(start, max(start, stop)) % len(self._data["dl_cqi"])
        return Environment(*(self._data[f][idx] for f in _FIELDS))


def make_scenario(
    name: str, seed: int, *, trace_path: Path | None = None, switch_epoch: int = 5000
) -> Scenario:
    """Build a scenario by name (``A``, ``B``, ``C``, ``mixed`` or ``trace``)."""
    if name == "A":
        return StaticScenario(seed)
    if name == "B":
        return StationaryScenario(seed)
    if name == "C":
        return AdversarialScenario(seed)
    if name == "C-iid":
        return IidAdversarialScenario(seed)
    if name == "mixed":
        return MixedScenario(seed, switch_epoch)
    if name == "trace":
        if trace_path is None:
            raise ConfigError("", "scenario.trace", "scenario 'trace' needs a trace file path")
        return TraceScenario(trace_path)
    raise ConfigError("", "scenario.name", f"unknown scenario {name!r}; choose one of {SCENARIOS}")
