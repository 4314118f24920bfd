"""A Gaussian-process posterior that grows one observation at a time, for BP-vRAN.

Why a module of its own: the kernel, the incremental Cholesky factor and the marginal
likelihood fit are the numerical core of BP-vRAN and are specified (and tested) against
from-scratch linear algebra independently of the bandit around them.

Model: f ~ GP(m0, k) with a constant prior mean m0 and the Matern 3/2 kernel with one
length scale per input dimension (automatic relevance determination),

    k(x, x') = s2 (1 + sqrt(3) r) exp(-sqrt(3) r),   r^2 = sum_d ((x_d - x'_d) / l_d)^2,

observed as y = f(x) + e with e ~ N(0, noise_var). With K = k(X, X) + noise_var I = L L^T
(a point that merges c observations has noise_var / c on the diagonal instead),

    mean(x) = m0 + k(x, X) K^-1 (y - m0),   var(x) = s2 - |L^-1 k(X, x)|^2.

Adding an observation appends one row to L instead of refactorising (O(n^3)); z =
L^-1 (y - m0) grows by one entry the same way. L^-1 is kept beside L and extended by one
row too (O(n^2)): numpy has no triangular solve, so L^-1 turns every solve into a matrix
product, including the block update of `CachedPosterior` (a BLAS call with no per-call
dispatch of scipy's or torch's solvers, whose overhead on these small systems was never
measured against it).

A decision asks for the posterior at the same query inputs again and again (BP-vRAN: one
context bin against every policy). `CachedPosterior` keeps V = L^-1 k(X, Q) for such a set
Q and extends it by the rows of the points added since it was last asked, so that each
round costs one row (O(n |Q|)) instead of the whole n x |Q| kernel block and its solve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GpHyperparameters:
    """Kernel and noise parameters; `length_scales` has one entry per input dimension."""

    length_scales: tuple[float, ...]
    signal_var: float
    noise_var: float
    prior_mean: float

    def __post_init__(self) -> None:
        scales = tuple(float(v) for v in self.length_scales)
        if not scales or not all(math.isfinite(v) and v > 0.0 for v in scales):
            raise ValueError(f"length_scales must be positive numbers, got {self.length_scales!r}")
        for name in ("signal_var", "noise_var"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not math.isfinite(self.prior_mean):
            raise ValueError(f"prior_mean must be finite, got {self.prior_mean!r}")
        object.__setattr__(self, "length_scales", scales)


def matern32(r2: np.ndarray, signal_var: float) -> np.ndarray:
    """The Matern 3/2 covariance for squared scaled distances r2 (any shape); overwrites
    and returns `r2` (the K x n matrices of a decision are the hot path, so no copies)."""
    r = np.sqrt(np.multiply(r2, 3.0, out=r2), out=r2)
    decay = np.exp(np.negative(r))
    r += 1.0
    r *= decay
    r *= signal_var
    return r


def scaled_sq_dist(a: np.ndarray, b: np.ndarray, length_scales: np.ndarray) -> np.ndarray:
    """r^2 between every row of `a` and every row of `b` after dividing by the length scales."""
    a = a / length_scales
    b = b / length_scales
    r2 = a @ b.T
    r2 *= -2.0
    r2 += (a * a).sum(1)[:, None]
    r2 += (b * b).sum(1)[None, :]
    return np.maximum(r2, 0.0, out=r2)


def kernel(a: np.ndarray, b: np.ndarray, hyper: GpHyperparameters) -> np.ndarray:
    """k(a, b) for row-wise inputs."""
    return matern32(scaled_sq_dist(a, b, np.asarray(hyper.length_scales)), hyper.signal_var)


class IncrementalGp:
    """The exact posterior of up to `capacity` points, extended one observation at a time.

    A point may stand for several observations of the same input: c observations with mean
    y are, for the posterior of f, exactly one observation y with noise noise_var / c.
    Points are only merged by `compact`, which rebuilds the factor; between compactions a
    repeated input is simply another point (merging it at once would change a diagonal
    entry of K, a rank-1 downdate of L's trailing block: n sequential steps per round).

    Inputs, targets and the factor live in arrays preallocated to `capacity`, so adding a
    point copies nothing.
    """

    def __init__(self, dim: int, hyper: GpHyperparameters, capacity: int) -> None:
        if len(hyper.length_scales) != dim:
            raise ValueError(
                f"{len(hyper.length_scales)} length scales for {dim}-dimensional inputs"
            )
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 point, got {capacity}")
        self.dim, self.hyper, self.capacity = dim, hyper, capacity
        self.n = 0
        self._x = np.zeros((capacity, dim))
        self._y = np.zeros(capacity)  # mean of the observations a point stands for
        self._counts = np.zeros(capacity)  # how many observations that is
        self._labels = np.zeros(capacity, dtype=np.intp)  # the caller's tag of each input
        self._chol = np.zeros((capacity, capacity))  # lower triangle used
        self._chol_inv = np.zeros((capacity, capacity))  # L^-1, lower triangle used
        self._z = np.zeros(capacity)  # L^-1 (y - m0)
        self.generation = 0
        """Counts refactorisations (compact, load): rows of L kept across a generation are
        unchanged, so what was computed from them (`CachedPosterior`) stays valid."""

    @property
    def inputs(self) -> np.ndarray:
        return self._x[: self.n]

    @property
    def targets(self) -> np.ndarray:
        return self._y[: self.n]

    @property
    def counts(self) -> np.ndarray:
        return self._counts[: self.n]

    @property
    def labels(self) -> np.ndarray:
        """The tag given with each point's input (BP-vRAN: its action)."""
        return self._labels[: self.n]

    @property
    def cholesky(self) -> np.ndarray:
        """L with L L^T = k(X, X) + diag(noise_var / counts), as extended so far."""
        return self._chol[: self.n, : self.n]

    @property
    def cholesky_inverse(self) -> np.ndarray:
        """L^-1, extended with L."""
        return self._chol_inv[: self.n, : self.n]

    @property
    def whitened_targets(self) -> np.ndarray:
        """z = L^-1 (y - m0), extended with L."""
        return self._z[: self.n]

    def add(self, x: np.ndarray, y: float, label: int = 0) -> None:
        """Condition on one more observation: one new row of L, L^-1 and z, O(n^2).
        `label` tags the input (equal inputs must carry equal labels)."""
        n = self.n
        if n == self.capacity:
            raise ValueError(f"the GP is full ({self.capacity} points); compact it first")
        x = np.asarray(x, dtype=np.float64)
        hyper = self.hyper
        chol_inv = self._chol_inv[:n, :n]
        cross = kernel(self._x[:n], x[None, :], hyper)[:, 0]
        row = chol_inv @ cross  # L^-1 k(X, x)
        pivot = hyper.signal_var + hyper.noise_var - float(row @ row)
        # noise_var > 0 keeps K positive definite; rounding can only eat a tiny pivot.
        diagonal = math.sqrt(max(pivot, hyper.noise_var * 1e-6))
        self._chol[n, :n] = row
        self._chol[n, n] = diagonal
        # [[L, 0], [r^T, d]]^-1 = [[L^-1, 0], [-r^T L^-1 / d, 1 / d]]
        self._chol_inv[n, :n] = -(row @ chol_inv) / diagonal
        self._chol_inv[n, n] = 1.0 / diagonal
        self._z[n] = (y - hyper.prior_mean - float(row @ self._z[:n])) / diagonal
        self._x[n], self._y[n], self._counts[n], self._labels[n] = x, y, 1.0, label
        self.n = n + 1

    def compact(self, keep: int) -> None:
        """Merge the points with identical inputs (mean target, summed count), keep the
        `keep` whose newest observation is most recent, refactorise once: O(n^3).

        Nothing is lost while the distinct inputs fit in `keep`: the posterior is exactly
        that of all observations so far.
        """
        if keep < 1:
            raise ValueError(f"keep must be at least 1 point, got {keep}")
        inputs, first, groups = np.unique(self.inputs, axis=0, return_index=True,
                                          return_inverse=True)
        groups = groups.ravel()
        labels = self.labels[first]
        counts = np.bincount(groups, weights=self.counts)
        sums = np.bincount(groups, weights=self.counts * self.targets)
        newest = np.zeros(len(inputs), dtype=np.intp)
        np.maximum.at(newest, groups, np.arange(self.n))
        order = np.sort(newest)[-keep:]  # positions of the kept groups' newest points, in order
        kept = groups[order]
        self.n = len(kept)
        self._x[: self.n] = inputs[kept]
        self._y[: self.n] = sums[kept] / counts[kept]
        self._counts[: self.n] = counts[kept]
        self._labels[: self.n] = labels[kept]
        self._refactorise()

    def load(
        self, x: np.ndarray, y: np.ndarray, counts: np.ndarray, labels: np.ndarray,
        chol: np.ndarray, chol_inv: np.ndarray, z: np.ndarray,
    ) -> None:
        """Restore a saved posterior bit for bit (a refactorisation could differ in the
        last bits, and restored agents must repeat the same decisions)."""
        n = len(y)
        shapes_ok = (x.shape == (n, self.dim) and counts.shape == labels.shape == z.shape == (n,)
                     and chol.shape == chol_inv.shape == (n, n))
        if n > self.capacity or not shapes_ok:
            raise ValueError(f"saved GP of {n} points does not fit this one (dim {self.dim}, "
                             f"capacity {self.capacity})")
        self.n = n
        self._x[:n], self._y[:n], self._counts[:n], self._z[:n] = x, y, counts, z
        self._labels[:n] = labels
        self._chol[:n, :n], self._chol_inv[:n, :n] = chol, chol_inv
        self.generation += 1

    def posterior(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and latent variance (noise excluded) at the rows of `xs`."""
        return CachedPosterior(self, xs).mean_and_variance()

    def _refactorise(self) -> None:
        hyper = self.hyper
        gram = kernel(self.inputs, self.inputs, hyper) + np.diag(hyper.noise_var / self.counts)
        chol = np.linalg.cholesky(gram)
        self._chol[: self.n, : self.n] = chol
        self._chol_inv[: self.n, : self.n] = np.tril(np.linalg.inv(chol))
        self._z[: self.n] = self.cholesky_inverse @ (self.targets - hyper.prior_mean)
        self.generation += 1


class CachedPosterior:
    """The posterior of `gp` at fixed query inputs, kept current as points are added.

    With V = L^-1 k(X, Q), mean = m0 + z^T V and var = s2 - colsum(V * V). Adding points
    n0..n-1 to the GP appends rows to L and z and leaves the earlier ones as they were, so
    V gains the rows

        V[n0:n] = (L^-1)[n0:n, n0:n] (k(X[n0:n], Q) - L[n0:n, :n0] V[:n0])

    (the trailing block of L^-1 is the inverse of L's trailing block), and z^T V and
    colsum(V * V) gain their terms: O((n - n0) n |Q|) instead of O(n^2 |Q|). A
    refactorisation (`gp.generation` changes) rebuilds V from scratch on the next call.
    The results equal a from-scratch posterior up to rounding.
    """

    def __init__(self, gp: IncrementalGp, queries: np.ndarray) -> None:
        self.gp = gp
        self.queries = np.asarray(queries, dtype=np.float64)
        size = len(self.queries)
        self._v = np.empty((gp.capacity, size))
        self._zv = np.zeros(size)  # z^T V
        self._sq = np.zeros(size)  # colsum(V * V)
        self._n = 0
        self._generation = gp.generation

    def mean_and_variance(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and latent variance at the queries, given all the GP's points."""
        gp = self.gp
        if self._generation != gp.generation:
            self._n, self._generation = 0, gp.generation
            self._zv[:] = 0.0
            self._sq[:] = 0.0
        if self._n < gp.n:
            self._extend(gp.n)
        hyper = gp.hyper
        return hyper.prior_mean + self._zv, np.maximum(hyper.signal_var - self._sq, 0.0)

    def _extend(self, n: int) -> None:
        gp, start = self.gp, self._n
        block = kernel(gp.inputs[start:n], self.queries, gp.hyper)
        if start:
            block -= gp.cholesky[start:n, :start] @ self._v[:start]
        block = gp.cholesky_inverse[start:n, start:n] @ block
        self._v[start:n] = block
        self._zv += gp.whitened_targets[start:n] @ block
        self._sq += np.einsum("ij,ij->j", block, block)
        self._n = n


def fit_hyperparameters(
    x: np.ndarray, y: np.ndarray, *, max_points: int = 300, steps: int = 200,
    learning_rate: float = 0.1,
) -> GpHyperparameters:
    """Length scales, signal and noise variance by maximum marginal likelihood.

    The prior mean is the sample mean of y (not optimised). The log-parameters start from
    unit length scales and half the sample variance each for signal and noise, and follow
    Adam on the exact gradient of the negative log marginal likelihood,

        NLL = y^T K^-1 y / 2 + log det L,   dNLL/dtheta = tr((K^-1 - a a^T) dK/dtheta) / 2,

    with a = K^-1 y and dk/dlog l_d = 3 s2 exp(-sqrt(3) r) ((x_d - x'_d) / l_d)^2 for
    Matern 3/2: deterministic, numpy only. Above `max_points` observations an evenly
    spaced subset is used, since each step costs O(n^3).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.shape != (len(x),) or len(y) < 3:
        raise ValueError(f"need inputs (n, d) and n targets with n >= 3, got {x.shape}, {y.shape}")
    if len(y) > max_points:
        keep = np.linspace(0, len(y) - 1, max_points).round().astype(int)
        x, y = x[keep], y[keep]
    prior_mean = float(y.mean())
    centred = y - prior_mean
    variance = max(float(centred.var()), 1e-6)
    dim = x.shape[1]
    theta = np.concatenate([np.zeros(dim), [math.log(variance / 2)] * 2])
    sq_diffs = (x[:, None, :] - x[None, :, :]) ** 2  # (n, n, d)
    eye = np.eye(len(y))
    moment, second = np.zeros_like(theta), np.zeros_like(theta)
    for step in range(1, steps + 1):
        scales, signal_var, noise_var = np.exp(theta[:dim]), math.exp(theta[dim]), \
            math.exp(theta[dim + 1])
        scaled = sq_diffs / scales**2
        r = np.sqrt(3.0 * scaled.sum(-1))
        decay = signal_var * np.exp(-r)
        gram = decay * (1.0 + r)
        inverse = np.linalg.inv(gram + (noise_var + 1e-8) * eye)
        weights = inverse @ centred
        inner = inverse - np.outer(weights, weights)
        grad = np.empty_like(theta)
        grad[:dim] = 0.5 * np.einsum("ij,ijd->d", inner * 3.0 * decay, scaled)
        grad[dim] = 0.5 * float((inner * gram).sum())
        grad[dim + 1] = 0.5 * noise_var * float(np.trace(inner))
        moment = 0.9 * moment + 0.1 * grad
        second = 0.999 * second + 0.001 * grad**2
        theta -= learning_rate * (moment / (1 - 0.9**step)) / (
            np.sqrt(second / (1 - 0.999**step)) + 1e-12)
    return GpHyperparameters(
        length_scales=tuple(float(v) for v in np.exp(theta[:dim])),
        signal_var=math.exp(theta[dim]),
        noise_var=math.exp(theta[dim + 1]),
        prior_mean=prior_mean,
    )
