"""A sum tree: non-negative leaf values with O(log n) point update and O(log n) sampling.

Why: Exp3 over K policies changes one weight per round but must sample from all K. A dense
vector makes every round O(K); a binary tree of partial sums makes it O(log K).

Layout: a flat array, node 1 is the root, node i has children 2i and 2i + 1, and the n
leaves sit at [capacity, capacity + n) where capacity is n rounded up to a power of two
(padding leaves stay 0). Every parent is recomputed as left + right whenever a child
changes, never incremented, so rounding errors cannot accumulate: the tree is always a
function of its current leaves alone.

The nodes live in a Python list of floats: a round touches about 2 log2(n) single nodes,
and indexing a list is several times faster than indexing a numpy array element by element.
Whole-tree work (building, reading all leaves) is done in numpy.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """Leaf values w_0..w_{n-1} >= 0 with their running total and proportional sampling."""

    def __init__(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 1 or values.size == 0:
            raise ValueError("a sum tree needs a non-empty 1-D array of leaf values")
        self.n_leaves = int(values.size)
        self._capacity = 1 << (self.n_leaves - 1).bit_length()
        self._nodes: list[float] = []
        self.reset(values)

    @property
    def total(self) -> float:
        """Sum of all leaves (the root; with a single leaf, the root is that leaf)."""
        return self._nodes[1]

    def __getitem__(self, index: int) -> float:
        return self._nodes[self._capacity + index]

    def set(self, index: int, value: float) -> None:
        """Set one leaf and recompute its ancestors: O(log n)."""
        nodes = self._nodes
        i = self._capacity + index
        nodes[i] = value
        i >>= 1
        while i:
            nodes[i] = nodes[2 * i] + nodes[2 * i + 1]
            i >>= 1

    def find(self, mass: float) -> int:
        """The leaf i whose interval [prefix(i), prefix(i) + w_i) contains `mass`.

        With mass uniform in [0, total) this samples i with probability w_i / total.
        Descending right only into subtrees with a positive sum means that a mass that
        rounding pushed to or past the total lands on the last positive leaf, so a zero
        leaf (padding, or a weight that underflowed) is never returned while total > 0.
        """
        nodes = self._nodes
        capacity = self._capacity
        i = 1
        while i < capacity:
            i <<= 1
            left = nodes[i]
            if mass >= left and nodes[i + 1] > 0.0:
                mass -= left
                i += 1
        return i - capacity

    def values(self) -> np.ndarray:
        """A copy of the leaves, in index order."""
        return np.array(self._nodes[self._capacity : self._capacity + self.n_leaves])

    def reset(self, values: np.ndarray) -> None:
        """Replace all leaves at once and rebuild the parents level by level: O(n)."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (self.n_leaves,):
            raise ValueError(f"expected {self.n_leaves} leaf values, got shape {values.shape}")
        if not (np.all(np.isfinite(values)) and np.all(values >= 0.0)):
            raise ValueError("sum-tree leaves must be finite and >= 0")
        capacity = self._capacity
        nodes = np.zeros(2 * capacity)
        nodes[capacity : capacity + self.n_leaves] = values
        start = capacity // 2
        while start:
            children = nodes[2 * start : 4 * start]
            nodes[start : 2 * start] = children[0::2] + children[1::2]
            start //= 2
        self._nodes = nodes.tolist()
