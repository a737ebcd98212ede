"""PNG images for the Dagster UI and the model store: training curves and reliability diagrams."""

from __future__ import annotations

import base64
import io

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lob_platform.models.specs import FAMILY_TITLES  # noqa: E402


def png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, metadata={"Software": None})  # no version stamp: same bytes each run
    plt.close(figure)
    return buffer.getvalue()


def markdown_image(png: bytes, title: str) -> str:
    """Markdown that shows the image inline in the Dagster UI's metadata."""
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"


def training_curve(family: str, label: str, history: list[dict], loss: str = "cross-entropy") -> bytes:
    """Per epoch (sequence models), per validation step (the TPP) or per search trial (tabular): training and validation ``loss``."""
    figure, axis = plt.subplots(figsize=(5, 3))
    if history and ("epoch" in history[0] or "step" in history[0]):
        unit = "epoch" if "epoch" in history[0] else "step"
        x = [h[unit] for h in history]
        axis.plot(x, [h["train_loss"] for h in history], marker="o", label="train")
        axis.plot(x, [h["validation_loss"] for h in history], marker="o", label="validation")
        axis.set_xlabel("epoch" if unit == "epoch" else "optimiser step")
    else:
        axis.plot([h["trial"] + 1 for h in history], [h["validation_log_loss"] for h in history], marker="o",
                  label="validation (per trial)")
        axis.set_xlabel("search trial")
    axis.set_ylabel(loss)
    axis.set_title(f"{FAMILY_TITLES.get(family, family)}" + (f", {label}" if label else ""))
    axis.legend()
    figure.tight_layout()
    return png(figure)


def forecast_plot(name: str, origins_ns: np.ndarray, forecast_mid: np.ndarray, realised_mid: np.ndarray, step_s: int) -> bytes:
    """The mid forecast 1 step and the whole horizon ahead against the mid that came, over the test
    day; ``forecast_mid`` and ``realised_mid`` are (forecast origins, steps), plotted at the time forecast."""
    figure, axis = plt.subplots(figsize=(7, 3.5))
    at = lambda step: (origins_ns + step * step_s * 1_000_000_000).astype("datetime64[ns]")  # noqa: E731
    axis.plot(at(1), realised_mid[:, 0], color="black", linewidth=0.8, label="realised mid")
    for step in sorted({1, forecast_mid.shape[1]}):
        axis.plot(at(step), forecast_mid[:, step - 1], linewidth=0.8, label=f"forecast {step} step(s) ahead")
    axis.set_title(f"{name}: mid forecast against realised (test day)")
    axis.legend(fontsize=7)
    figure.autofmt_xdate()
    figure.tight_layout()
    return png(figure)


def reliability_diagram(family: str, label: str, table: list[dict]) -> bytes:
    """Accuracy against mean confidence per confidence bucket, with the diagonal of perfect calibration."""
    figure, axis = plt.subplots(figsize=(4, 4))
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="calibrated")
    axis.plot([r["confidence"] for r in table], [r["accuracy"] for r in table], marker="o", label="model")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("mean confidence")
    axis.set_ylabel("accuracy")
    axis.set_title(f"{FAMILY_TITLES[family]}, {label}")
    axis.legend()
    figure.tight_layout()
    return png(figure)
