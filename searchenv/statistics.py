"""Statistics of evaluation results (pure numpy): pass@k and bootstrap intervals.

- pass@k: the unbiased estimator of Chen et al. (2021) from ``n`` samples of which ``c`` are
  correct, and its curve over ``k = 1, 2, 4, ...``.
- uncertainty: percentile bootstrap intervals, and a paired bootstrap for the difference
  between two agents evaluated on the same questions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# Bootstrap resamples are drawn in chunks so that memory stays around this many floats.
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000


# ----------------------------------------------------------------------------------------------
# pass@k


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: ``1 - C(n-c, k) / C(n, k)``.

    Computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``, which never forms the (huge) binomials.

    >>> pass_at_k(10, 0, 3), pass_at_k(10, 10, 3)
    (0.0, 1.0)
    >>> round(pass_at_k(4, 1, 2), 6)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    0.5
    >>> pass_at_k(2, 1, 3)
    Traceback (most recent call last):
    ...
    ValueError: pass@k needs n >= k >= 1 and 0 <= c <= n; got n=2, c=1, k=3
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"pass@k: {name} must be an int, got {type(value).__name__}")
    if not (1 <= k <= n and 0 <= c <= n):
        raise ValueError(f"pass@k needs n >= k >= 1 and 0 <= c <= n; got n={n}, c={c}, k={k}")
    if n - c < k:  # every size-k subset holds a correct sample
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def default_ks(n: int) -> tuple[int, ...]:
    """Powers of two up to ``n``, plus ``n`` itself when it is not one.

    >>> default_ks(8), default_ks(6), default_ks(1)
    ((1, 2, 4, 8), (1, 2, 4, 6), (1,))
    """
    if n < 1:
        raise ValueError(f"need at least one sample per question, got n={n}")
    ks = [1 << i for i in range(n.bit_length()) if (1 << i) <= n]
    if ks[-1] != n:
        ks.append(n)
    return tuple(ks)


def _as_correct_matrix(correct_matrix: Any) -> np.ndarray:
    matrix = np.asarray(correct_matrix)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"correct_matrix must be 2-D [questions x samples], non-empty; got {matrix.shape}")
    if not np.isin(matrix, (0, 1)).all():
        raise ValueError("correct_matrix must hold booleans (or 0/1)")
    return matrix.astype(bool)


def pass_at_k_per_question(correct_matrix: Any, k: int) -> np.ndarray:
    """pass@k of every question (row) of a ``[questions x n samples]`` boolean matrix.

    >>> pass_at_k_per_question([[1, 0], [0, 0]], 1).tolist()
    [0.5, 0.0]
    """
    matrix = _as_correct_matrix(correct_matrix)
    n = matrix.shape[1]
    return np.array([pass_at_k(n, int(c), k) for c in matrix.sum(axis=1)], dtype=np.float64)


def pass_at_k_curve(correct_matrix: Any, ks: Iterable[int] | None = None) -> dict[int, float]:
    """Mean pass@k over questions for each ``k`` (default :func:`default_ks` of n samples).

    >>> pass_at_k_curve([[True, False, False, False], [False, False, False, False]])
    {1: 0.125, 2: 0.25, 4: 0.5}
    """
    matrix = _as_correct_matrix(correct_matrix)
    chosen = default_ks(matrix.shape[1]) if ks is None else tuple(ks)
    return {int(k): float(pass_at_k_per_question(matrix, int(k)).mean()) for k in chosen}


# ----------------------------------------------------------------------------------------------
# bootstrap


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval; ``n`` is the number of resampled units."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly above or wholly below zero."""
        return self.low > 0.0 or self.high < 0.0

    def to_dict(self) -> dict[str, float | int]:
        """The fields as a JSON-ready dict."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n})"


def _as_values(values: Any, name: str = "values") -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers; got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite entries")
    return array


def _check_bootstrap_args(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _resampled_statistics(
    columns: Sequence[np.ndarray],
    statistic: Callable[..., Any],
    n_resamples: int,
    seed: int,
) -> list[np.ndarray]:
    """``statistic`` of each column on the same bootstrap index draws (so pairs stay paired)."""
    rng = np.random.default_rng(seed)
    n = columns[0].size
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n)
    out: list[list[np.ndarray]] = [[] for _ in columns]
    for start in range(0, n_resamples, chunk):
        rows = min(chunk, n_resamples - start)
        index = rng.integers(0, n, size=(rows, n))
        for column, sink in zip(columns, out, strict=True):
            samples = column[index]
            try:
                stats = np.asarray(statistic(samples, axis=1), dtype=np.float64)
            except TypeError:  # a statistic without an ``axis`` argument
                stats = np.array([statistic(row) for row in samples], dtype=np.float64)
            sink.append(stats.reshape(rows))
    return [np.concatenate(parts) for parts in out]


def _percentile_interval(point: float, draws: np.ndarray, confidence: float, n: int) -> Interval:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return Interval(mean=float(point), low=float(low), high=float(high), n=n)


def bootstrap_ci(
    values: Any,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    statistic: Callable[..., Any] = np.mean,
) -> Interval:
    """Percentile bootstrap interval of ``statistic(values)``; deterministic for a given seed.

    >>> ci = bootstrap_ci([0, 1, 1, 0, 1, 1, 1, 0, 1, 1])
    >>> ci.mean, ci.n, 0.3 <= ci.low < ci.mean < ci.high <= 1.0
    (0.7, 10, True)
    >>> bootstrap_ci([1.0, 1.0, 1.0])
    Interval(mean=1.0, low=1.0, high=1.0, n=3)
    """
    array = _as_values(values)
    _check_bootstrap_args(n_resamples, confidence)
    (draws,) = _resampled_statistics([array], statistic, n_resamples, seed)
    return _percentile_interval(float(statistic(array)), draws, confidence, array.size)


def paired_bootstrap_diff(
    a: Any,
    b: Any,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    statistic: Callable[..., Any] = np.mean,
) -> Interval:
    """Interval of ``statistic(a) - statistic(b)`` where ``a[i]`` and ``b[i]`` share unit ``i``.

    Units (questions) are resampled together, so per-question difficulty cancels out.

    >>> d = paired_bootstrap_diff([1, 1, 1, 0, 1, 1], [0, 1, 0, 0, 0, 1])
    >>> round(d.mean, 4), d.n, d.high > d.low
    (0.5, 6, True)
    """
    first, second = _as_values(a, "a"), _as_values(b, "b")
    if first.size != second.size:
        raise ValueError(f"paired bootstrap needs equal lengths, got {first.size} and {second.size}")
    _check_bootstrap_args(n_resamples, confidence)
    draws_a, draws_b = _resampled_statistics([first, second], statistic, n_resamples, seed)
    point = float(statistic(first)) - float(statistic(second))
    return _percentile_interval(point, draws_a - draws_b, confidence, first.size)
