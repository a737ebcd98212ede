"""PNG images for the Dagster UI and the model store: training curves and reliability diagrams."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lob_platform.models.specs import FAMILY_TITLES  # noqa: E402


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, metadata={"Software": None})  # no version stamp: same bytes each run
    plt.close(figure)
    return buffer.getvalue()


def markdown_image(png: bytes, title: str) -> str:
    """Markdown that shows the image inline in the Dagster UI's metadata."""
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"


def training_curve(family: str, label: str, history: list[dict]) -> bytes:
    """Per epoch (sequence models) or per search trial (tabular): training and validation loss."""
    figure, axis = plt.subplots(figsize=(5, 3))
    if history and "epoch" in history[0]:
        x = [h["epoch"] for h in history]
        axis.plot(x, [h["train_loss"] for h in history], marker="o", label="train")
        axis.plot(x, [h["validation_loss"] for h in history], marker="o", label="validation")
        axis.set_xlabel("epoch")
    else:
        axis.plot([h["trial"] + 1 for h in history], [h["validation_log_loss"] for h in history], marker="o",
                  label="validation (per trial)")
        axis.set_xlabel("search trial")
    axis.set_ylabel("cross-entropy")
    axis.set_title(f"{FAMILY_TITLES[family]}, {label}")
    axis.legend()
    figure.tight_layout()
    return _png(figure)


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
    return _png(figure)
