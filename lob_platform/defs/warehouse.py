"""The DuckDB catalogue as an asset: views over every warehouse table, refreshed after ingest."""


from pathlib import Path

import dagster as dg

from lob_platform.defs.crypto_panel import PANEL_KEY
from lob_platform.defs.features import FEATURE_KEYS
from lob_platform.defs.partitions import VENUES
from lob_platform.defs.raw import raw_key
from lob_platform.defs.validated import REJECTED_TABLE, REPORT_TABLE, VALID_TABLE
from lob_platform.paths import warehouse_root
from lob_platform.warehouse import CATALOGUE, refresh_views

INGEST_KEYS = [
    key
    for venue in VENUES
    for key in (raw_key(venue), dg.AssetKey([venue.name, VALID_TABLE[venue.table]]),
                dg.AssetKey([venue.name, REJECTED_TABLE[venue.table]]), dg.AssetKey([venue.name, REPORT_TABLE]))
]


@dg.asset(key=["warehouse", "duckdb_catalog"], deps=[*INGEST_KEYS, *FEATURE_KEYS, PANEL_KEY], group_name="warehouse", kinds={"duckdb"})
def duckdb_catalog() -> dg.MaterializeResult:
    """Views in warehouse/lob.duckdb over every table's parquet partitions (hive keys venue,
    instrument, date become columns), so `duckdb warehouse/lob.duckdb` answers SQL on all outputs."""
    root = warehouse_root()
    counts = refresh_views(root)
    return dg.MaterializeResult(metadata={
        "catalogue": dg.MetadataValue.path(str(Path(root, CATALOGUE).resolve())),
        "views": dg.MetadataValue.json(counts),
    })
