"""Resources: the warehouse IO manager that stores every asset partition as parquet."""


from pathlib import Path

import dagster as dg
import polars as pl

from lob_platform.paths import warehouse_root
from lob_platform.storage import partition_path, write_partition


def hive_keys(asset_key: dg.AssetKey, partition_key) -> tuple[str, dict[str, str]]:
    """(table, hive keys) of an asset partition: key ``[venue, table]`` -> table/venue=venue/...."""
    *prefix, table = asset_key.path
    keys = {"venue": prefix[0]} if prefix else {}
    if isinstance(partition_key, dg.MultiPartitionKey):
        dims = partition_key.keys_by_dimension
        keys.update({"instrument": dims["instrument"], "date": dims["date"]})
    elif partition_key is not None:
        keys["date"] = partition_key
    return table, keys


MANY_PARTITIONS = {"partitions": "many"}
"""``AssetIn`` metadata: load every mapped upstream partition that exists, as ``{partition key: frame}``
(a training window of earlier days, every instrument of a date); days without data are absent."""


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Writes polars frames as one parquet file per partition, atomically; reads them back."""

    root: str = ""
    """Warehouse folder; empty means ``$LOB_WAREHOUSE_DIR`` or ./warehouse at run time."""

    def _partition_path(self, asset_key: dg.AssetKey, partition, partitions_def) -> Path:
        if isinstance(partition, str) and "|" in partition:
            partition = partitions_def.get_partition_key_from_str(partition)
        table, keys = hive_keys(asset_key, partition)
        return partition_path(Path(self.root) if self.root else warehouse_root(), table, keys)

    def _path(self, context) -> Path:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        partitions_def = context.asset_partitions_def if context.has_asset_partitions else None
        return self._partition_path(context.asset_key, partition, partitions_def)

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        path = self._path(context)
        size = write_partition(obj, path)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path)), "rows": obj.height, "parquet_bytes": size})

    def load_input(self, context: dg.InputContext):
        if context.definition_metadata.get("partitions") == MANY_PARTITIONS["partitions"]:
            paths = {str(key): self._partition_path(context.asset_key, key, context.asset_partitions_def)
                     for key in context.asset_partition_keys}
            return {key: pl.read_parquet(path) for key, path in sorted(paths.items()) if path.exists()}
        path = self._path(context)
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: materialize {context.asset_key.to_user_string()} for this partition first.")
        return pl.read_parquet(path)
