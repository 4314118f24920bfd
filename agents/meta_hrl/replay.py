"""A fixed-size replay buffer of named numpy arrays (one per transition field).

One buffer per task and level: the transitions of a DU all have the same shapes, so each
field is one preallocated array and a batch is one fancy-indexing gather. The buffer is
plain numpy so that a checkpoint holds it exactly (`state_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


class ReplayBuffer:
    """Ring buffer: the oldest transitions are overwritten once `capacity` is reached."""

    def __init__(self, capacity: int, shapes: Mapping[str, tuple[int, ...]]) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 transition, got {capacity}")
        self.capacity = capacity
        self._data = {k: np.zeros((capacity, *s), np.float32) for k, s in shapes.items()}
        self._next = 0
        self.size = 0

    def add(self, **fields: np.ndarray | float) -> None:
        """Append one transition; every field of the buffer must be given."""
        if fields.keys() != self._data.keys():
            raise ValueError(f"a transition has the fields {sorted(self._data)}, "
                             f"got {sorted(fields)}")
        for key, value in fields.items():
            self._data[key][self._next] = value
        self._next = (self._next + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """`batch_size` transitions drawn uniformly with replacement."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = rng.integers(0, self.size, batch_size)
        return {k: v[idx] for k, v in self._data.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "next": self._next, "size": self.size,
                "data": {k: v[: self.size].copy() for k, v in self._data.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["capacity"] != self.capacity or state["data"].keys() != self._data.keys():
            raise ValueError("replay buffer state of another shape: build the learner with "
                             "the parameters of the saved run")
        self._next, self.size = int(state["next"]), int(state["size"])
        for key, values in state["data"].items():
            self._data[key][: self.size] = values
