"""The model store: one folder per trained model under ``warehouse/models/``,

    models/venue=V/model=FAMILY/instrument=I/date=D/label=L/
        manifest.json   what the model is and what made it (below)
        model.pkl       a fitted scikit-learn / LightGBM estimator   (or model.pt: a torch state dict)
        *.png           its training curve and reliability diagram
        *_model.pt      the panel forecasters: the best and final checkpoints (state dict,
                        optimiser state, target indices, configuration, history)

The manifest records the model family, label and classes, the configuration and its hash, the
training window (scope, dates, the feature partitions read and their versions), the feature
list, everything fit on training rows (label thresholds, scalers, imputer medians), library
versions, validation metrics and every search trial or epoch, and the model file's SHA-256.

``load`` gives back the model exactly as saved (identical predictions) and refuses one whose
manifest differs from what the caller expects (features, classes, label, configuration),
saying which field differs and how. Files are written atomically; a rerun of the same training
writes the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tempfile
from importlib.metadata import version as package_version
from pathlib import Path

from lob_platform.errors import IncompatibleCheckpoint

MANIFEST = "manifest.json"
LIBRARIES = ("lob_platform", "torch", "lightgbm", "scikit-learn", "optuna", "numpy", "polars")
CHECKED = ("family", "label", "classes", "features", "config_hash", "labelling")
"""Manifest fields a consumer states and ``load`` compares."""


def model_folder(root: Path, venue: str, family: str, instrument: str, date: str, label: str) -> Path:
    return Path(root, "models", f"venue={venue}", f"model={family}", f"instrument={instrument}", f"date={date}",
                f"label={label}")


def library_versions() -> dict[str, str]:
    return {name: package_version(name) for name in LIBRARIES}


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def serialise(model) -> tuple[bytes, str]:
    """(bytes, file name) of a model: a torch module's state dict, or a pickled estimator."""
    import torch

    if isinstance(model, torch.nn.Module):
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
        return buffer.getvalue(), "model.pt"
    return pickle.dumps(model, protocol=5), "model.pkl"


def save(folder: Path, manifest: dict, model, files: dict[str, bytes] | None = None) -> str:
    """Write the model, the files that go with it (images, checkpoints: name -> bytes) and the
    manifest; return the model's version (a hash of the model bytes and the manifest)."""
    data, name = serialise(model)
    manifest = {**manifest, "model_file": name, "model_sha256": hashlib.sha256(data).hexdigest(),
                "libraries": library_versions()}
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
    write_atomically(folder / name, data)
    for file_name, content in (files or {}).items():
        write_atomically(folder / file_name, content)
    write_atomically(folder / MANIFEST, text)
    return _version(data, text)


def _version(model_bytes: bytes, manifest_bytes: bytes) -> str:
    return hashlib.sha256(model_bytes + manifest_bytes).hexdigest()[:16]


def version_of(folder: Path) -> str:
    """The version of the model stored in ``folder`` (what ``save`` returned when it wrote it)."""
    text = _manifest_bytes(folder)
    return _version((folder / json.loads(text)["model_file"]).read_bytes(), text)


def _manifest_bytes(folder: Path) -> bytes:
    path = folder / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"no model at {folder} (no {MANIFEST}): materialize its trained_models partition first.")
    return path.read_bytes()


def read_manifest(folder: Path) -> dict:
    return json.loads(_manifest_bytes(folder))


def check(manifest: dict, expected: dict, folder: Path) -> None:
    """Refuse a model whose manifest differs from ``expected`` in a field of ``CHECKED``."""
    differs = [f"{key}: the model has {manifest.get(key)!r}, this run needs {expected[key]!r}"
               for key in CHECKED if key in expected and _plain(manifest.get(key)) != _plain(expected[key])]
    if differs:
        raise IncompatibleCheckpoint(f"the model at {folder} was made for another setup; " + "; ".join(differs)
                                     + ". Retrain it with this setup (materialize its trained_models partition) or use its own.")


def load(folder: Path, expected: dict, build_module=None) -> tuple[dict, object, str]:
    """(manifest, model, version) of a stored model, checked against ``expected`` first and against
    its recorded SHA-256. ``build_module(manifest)`` makes the empty torch module a state dict loads into."""
    text = _manifest_bytes(folder)
    manifest = json.loads(text)
    check(manifest, expected, folder)
    data = (folder / manifest["model_file"]).read_bytes()
    version = _version(data, text)
    if hashlib.sha256(data).hexdigest() != manifest["model_sha256"]:
        raise IncompatibleCheckpoint(f"{folder / manifest['model_file']} does not match the SHA-256 its manifest "
                                     "records: the file was changed or half-written; retrain the model.")
    if manifest["model_file"].endswith(".pt"):
        import torch

        module = build_module(manifest)
        module.load_state_dict(torch.load(io.BytesIO(data), weights_only=True))
        module.eval()
        return manifest, module, version
    return manifest, pickle.loads(data), version


def _plain(value):
    return json.loads(json.dumps(value, default=str))
