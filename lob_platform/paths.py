"""Where the platform reads raw data and writes outputs.

Everything is relative to the working directory unless an environment variable says otherwise,
so a fresh clone works with no edited file.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    """Raw inputs: ``$LOB_DATA_DIR`` or ``./data``."""
    return Path(os.environ.get("LOB_DATA_DIR", "data"))


def warehouse_root() -> Path:
    """Partitioned parquet outputs and the DuckDB catalogue: ``$LOB_WAREHOUSE_DIR`` or ``./warehouse``."""
    return Path(os.environ.get("LOB_WAREHOUSE_DIR", "warehouse"))
