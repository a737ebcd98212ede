"""The panel forecasters' baselines, scored on the same test windows as the models.

- **Persistence**: every future step equals the last context value.
- **DLinear** (Zeng et al., 2023, channel by channel): a channel's scaled context is split into a
  moving-average trend (window ``DLINEAR_KERNEL``, edges repeated) and the remainder; a linear map
  of both (and a bias) gives the change of each future step from the last value. Fit by ridge least
  squares on the training windows only, one map per target channel.
"""

from __future__ import annotations

import numpy as np

DLINEAR_KERNEL = 25
RIDGE = 1.0


def decompose(x: np.ndarray, kernel: int = DLINEAR_KERNEL) -> np.ndarray:
    """(windows, context) -> (windows, 2 * context + 1): trend, remainder, a bias column."""
    kernel = min(kernel, x.shape[1] if x.shape[1] % 2 else x.shape[1] - 1)
    pad = kernel // 2
    padded = np.concatenate([np.repeat(x[:, :1], pad, axis=1), x, np.repeat(x[:, -1:], pad, axis=1)], axis=1)
    cumulative = np.cumsum(np.pad(padded, ((0, 0), (1, 0))), axis=1)
    trend = (cumulative[:, kernel:] - cumulative[:, :-kernel]) / kernel
    return np.concatenate([trend, x - trend, np.ones((len(x), 1))], axis=1)


class DLinear:
    """One ridge map per channel from its decomposed context to its future changes."""

    def __init__(self, weights: np.ndarray):
        self.weights = weights  # (channels, 2 * context + 1, horizon)

    @classmethod
    def fit(cls, context: np.ndarray, last: np.ndarray, future: np.ndarray, ridge: float = RIDGE) -> "DLinear":
        """``context`` (windows, context, channels), ``last`` (windows, channels), ``future``
        (windows, horizon, channels), all scaled."""
        weights = []
        for c in range(context.shape[2]):
            x = decompose(context[:, :, c].astype(np.float64))
            y = (future[:, :, c] - last[:, c, None]).astype(np.float64)
            weights.append(np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y))
        return cls(np.stack(weights))

    def predict(self, context: np.ndarray, last: np.ndarray) -> np.ndarray:
        """(windows, horizon, channels) scaled forecasts."""
        return np.stack([last[:, c, None] + decompose(context[:, :, c].astype(np.float64)) @ self.weights[c]
                         for c in range(context.shape[2])], axis=2)
