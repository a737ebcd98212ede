"""Resources: the warehouse IO manager that stores every asset partition as parquet."""

from pathlib import Path

import dagster as dg
import polars as pl

from lob_platform.core.settings import warehouse_root
from lob_platform.storage import partition_path, write_partition


def hive_keys(asset_key: dg.AssetKey, partition_key) -> tuple[str, dict[str, str]]:
    """(table, hive keys) of an asset partition: key ``[venue, table]`` -> table/venue=venue/...,
    ``[venue, model, table]`` -> table/venue=venue/model=model/...."""
    *prefix, table = asset_key.path
    keys = dict(zip(("venue", "model"), prefix))
    if isinstance(partition_key, dg.MultiPartitionKey):
        dims = partition_key.keys_by_dimension
        keys.update({"instrument": dims["instrument"], "date": dims["date"]})
    elif partition_key is not None:
        keys["date"] = partition_key
    return table, keys


def asset_partition_path(asset_key: dg.AssetKey, partition_key, partitions_def=None) -> Path:
    """Where an asset partition's file is under the warehouse root (``$LOB_WAREHOUSE_DIR``)."""
    if isinstance(partition_key, str) and "|" in partition_key and partitions_def is not None:
        partition_key = partitions_def.get_partition_key_from_str(partition_key)
    table, keys = hive_keys(asset_key, partition_key)
    return partition_path(warehouse_root(), table, keys)


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Writes polars frames as one parquet file per partition, atomically, with the file's version
    (a hash of its bytes) in the materialization's metadata; reads them back."""

    def _path(self, context) -> Path:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        partitions_def = context.asset_partitions_def if context.has_asset_partitions else None
        return asset_partition_path(context.asset_key, partition, partitions_def)

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        path = self._path(context)
        size, version = write_partition(obj, path)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path)), "rows": obj.height, "parquet_bytes": size,
                                     "version": version})

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        path = self._path(context)
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: materialize {context.asset_key.to_user_string()} for this partition first.")
        return pl.read_parquet(path)
