"""A stored model applied to online feature rows: which model (family, label, the date whose model
it is) and which version are configuration; a newly published version is picked up between
batches without a restart.

The model is read from the model store (``training.store``) exactly as the batch predictions read
it, and applied the same way: tabular models to each row's features, the LSTM to the window of
the last ``window`` rows of its day (standardised with the training scaler), so a row with fewer
rows before it today gets no prediction, as in the batch path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lob_platform.errors import ConfigError
from lob_platform.models.specs import FAMILIES, TABULAR_FAMILIES
from lob_platform.training import store
from lob_platform.training.fit import build_module, scaled


@dataclass(frozen=True)
class ModelChoice:
    """Which stored model serves: ``family`` and ``label``; ``model_date`` (None: the model made
    for the date of the events); ``version`` (None: whatever the store holds now, followed)."""

    family: str = "lightgbm"
    label: str = "next_mid_up"
    model_date: str | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"{self.family!r} is not served on the streaming path, which serves the next-move "
                              f"classifiers: choose one of {', '.join(FAMILIES)}.")


class ModelUnavailable(Exception):
    """The configured model is not in the store (yet), or not in the configured version."""


class ServedModel:
    """One stored model of an instrument-date, reloaded when its manifest changes."""

    def __init__(self, root: Path, venue: str, instrument: str, date: str, choice: ModelChoice):
        self.choice = choice
        self.folder = store.model_folder(root, venue, choice.family, instrument, choice.model_date or date, choice.label)
        self.stamp: tuple | None = None
        self.version = ""
        self.window: np.ndarray | None = None  # the LSTM's last window - 1 feature rows of today

    def refresh(self) -> bool:
        """Load the model if it changed in the store since last time; whether it did."""
        try:
            status = (self.folder / store.MANIFEST).stat()
        except FileNotFoundError:
            raise ModelUnavailable(f"no {self.choice.family} model for {self.choice.label} at {self.folder}: materialize "
                                   "its trained_models partition first") from None
        stamp = (status.st_mtime_ns, status.st_size)
        if stamp == self.stamp:
            return False
        manifest, model, version = store.load(self.folder, {"family": self.choice.family, "label": self.choice.label},
                                              build_module)
        if self.choice.version and version != self.choice.version:
            raise ModelUnavailable(f"the model at {self.folder} is version {version}; version {self.choice.version} "
                                   "is configured: publish it or change the configuration")
        self.manifest, self.model, self.version, self.stamp = manifest, model, version, stamp
        self.classes = list(manifest["classes"])
        self.up = self.classes.index("up")
        return True

    def predict(self, features: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(rows of the batch that get a prediction, their class probabilities)."""
        matrix = self._matrix(features)
        if self.manifest["family"] == "lightgbm":  # the booster itself: the same numbers without scikit-learn's per-call checks
            p = self.model.booster_.predict(matrix, num_threads=1)
            return np.arange(len(matrix)), np.column_stack((1.0 - p, p)) if p.ndim == 1 else p
        if self.manifest["family"] in TABULAR_FAMILIES:
            return np.arange(len(matrix)), self.model.predict_proba(matrix)
        return self._predict_windows(matrix, features["event_row"])

    def remember(self, features: dict[str, np.ndarray]) -> None:
        """Take in rows without predicting them (a consumer rebuilding its state after a takeover)."""
        if self.manifest["family"] not in TABULAR_FAMILIES:
            self._extend(self._matrix(features), features["event_row"])

    def _matrix(self, features: dict[str, np.ndarray]) -> np.ndarray:
        return np.column_stack([np.asarray(features[c], dtype=np.float64) for c in self.manifest["features"]])

    def _extend(self, matrix: np.ndarray, event_row: np.ndarray) -> tuple[np.ndarray, int]:
        """The day's last window - 1 feature rows and these, standardised with the current
        version's scaler; and where these start in it. The rows are kept unscaled, so a new
        version's first windows are scaled with its own scaler."""
        length = self.manifest["config"]["window"]
        if event_row[0] == 0 or self.window is None:
            self.window = np.zeros((0, matrix.shape[1]))
        history = np.vstack((self.window, matrix))
        offset = len(self.window)
        self.window = history[-(length - 1):] if length > 1 else history[:0]
        return scaled(history, self.manifest["preprocessing"]["standardise"]), offset

    def _predict_windows(self, matrix: np.ndarray, event_row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        length = self.manifest["config"]["window"]
        history, offset = self._extend(matrix, event_row)
        rows = np.flatnonzero(event_row >= length - 1)
        if not len(rows):
            return rows, np.zeros((0, len(self.classes)))
        windows = history[(rows + offset)[:, None] + np.arange(-length + 1, 1)[None, :]]
        with torch.inference_mode():
            proba = torch.softmax(self.model(torch.from_numpy(windows)), dim=-1).double().numpy()
        return rows, proba


def model_threads() -> None:
    """One thread for inference: the consumers are the parallelism (several processes share the cores)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
