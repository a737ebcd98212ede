"""Shared fixtures: the real LOBSTER / crypto sample files in ../shared/data, and isolated
data and warehouse folders per test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("LOB_MODEL_SIZE", "tiny")  # every model trained in tests is a small configuration
for _name in [name for name in os.environ if name == "LOB_PROFILE" or name.startswith(("LOB_CELERY_", "DAGSTER_PG_"))]:
    del os.environ[_name]  # a deployment profile of the shell is not the tests': they choose their own

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LOBSTER_SAMPLES = SHARED_DATA / "lobster"
CRYPTO_SAMPLES = SHARED_DATA / "crypto"
AMZN_5 = LOBSTER_SAMPLES / "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"
AMZN_1 = LOBSTER_SAMPLES / "LOBSTER_SampleFile_AMZN_2012-06-21_1.zip"
AAPL_1 = LOBSTER_SAMPLES / "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real sample data not found at {path} (../shared/data is absent)")
    return path


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """An empty data root and warehouse, selected through the environment like a user would."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("LOB_DATA_DIR", str(root))
    monkeypatch.setenv("LOB_WAREHOUSE_DIR", str(tmp_path / "warehouse"))
    return root


@pytest.fixture
def amzn_day_dir(data_dir) -> Path:
    """A data root holding the real AMZN 1-level sample zip under lobster/."""
    (data_dir / "lobster").mkdir()
    shutil.copy(require(AMZN_1), data_dir / "lobster")
    return data_dir


@pytest.fixture
def amzn_csv_pair(tmp_path) -> tuple[Path, Path]:
    """The AMZN 1-level sample day unzipped as a CSV pair."""
    import zipfile

    folder = tmp_path / "csv"
    with zipfile.ZipFile(require(AMZN_1)) as archive:
        archive.extractall(folder)
    message = next(folder.glob("*_message_1.csv"))
    return message, next(folder.glob("*_orderbook_1.csv"))
