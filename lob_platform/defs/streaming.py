"""The streaming path in the asset graph: the sink's table (written by ``lob stream sink``, not by
Dagster) and its evaluation, per (date, instrument), for every model family that streamed.

    {venue}/stream_predictions (external) -> {venue}/stream_evaluation
    {venue}/features, {venue}/{family}/predictions ----------^
"""


import json
from pathlib import Path

import dagster as dg
import polars as pl

from lob_platform.core.settings import Settings, warehouse_root
from lob_platform.defs.models import markdown_table, model_key
from lob_platform.defs.partitions import by_date_and_instrument, day_of
from lob_platform.defs.raw import venue_key
from lob_platform.lineage import FEATURES, PREDICTIONS, InputsNotReady, Warehouse
from lob_platform.sources.registry import Venue
from lob_platform.streaming.evaluation import evaluate
from lob_platform.streaming.sink import TABLE as SINK_TABLE
from lob_platform.streaming.sink import read_partition
from lob_platform.training import store

STREAM_EVALUATION = "stream_evaluation"
HEADLINE = ("streamed", "missing", "duplicated", "accuracy", "brier", "ece", "latency_p50_us", "latency_p99_us",
            "lag_max", "agreement")


def stream_evaluation_job_name(venue: Venue) -> str:
    return f"evaluate_stream_{venue.name}"


def streamed_families(root: Path, venue: str, instrument: str, date: str) -> dict[str, Path]:
    """Model family -> the sink's folder of this instrument-day, for every family that streamed it."""
    base = Path(root, SINK_TABLE, f"venue={venue}")
    return {folder.parent.parent.name.split("=", 1)[1]: folder
            for folder in sorted(base.glob(f"model=*/instrument={instrument}/date={date}")) if any(folder.glob("part-*"))}


def build_streaming_assets(venue: Venue, settings: Settings) -> list:
    partitions = by_date_and_instrument(venue.name)
    sink_key, key = venue_key(venue, SINK_TABLE), venue_key(venue, STREAM_EVALUATION)
    sink = dg.AssetSpec(sink_key, partitions_def=partitions, group_name=f"{venue.name}_streaming", kinds={"redis", "parquet"},
                        description=("Predictions served live from the Redis events streams, written by the sink "
                                     "(`lob stream sink`, or `lob stream run` for a whole day): one row per event, "
                                     "model version, latency and consumer lag. Not materialized by Dagster."))
    checks = [dg.AssetCheckSpec("every_event_once", asset=key, blocking=True, description=(
                  "the sink holds exactly one prediction for every event the model predicts (none missing, none twice)")),
              dg.AssetCheckSpec("agrees_with_batch", asset=key, description=(
                  "streamed predictions equal the batch predictions of the same model version on the same events"))]

    @dg.multi_asset(
        name=f"{venue.name}_stream_evaluation",
        outs={"stream_evaluation": dg.AssetOut(key=key, kinds={"polars", "parquet"}, description=(
            "How the streamed predictions did, per model family: accuracy, Brier, ECE and calibration buckets, "
            "latency p50 / p99, consumer lag, coverage (missing / duplicated events) and agreement with the batch "
            "predictions of the same model version."))},
        deps=[sink_key, venue_key(venue, FEATURES), *(model_key(venue, f, PREDICTIONS) for f in settings.models.families)],
        partitions_def=partitions,
        check_specs=checks,
        group_name=f"{venue.name}_streaming",
    )
    def stream_evaluation(context: dg.AssetExecutionContext):
        date, instrument = day_of(context)
        root = warehouse_root()
        warehouse = Warehouse(root)
        families = streamed_families(root, venue.name, instrument, date)
        if not families:
            raise InputsNotReady(f"no streamed predictions of {venue.name} {date}|{instrument} under {root / SINK_TABLE}: "
                                 f"run `lob stream run --venue {venue.name} --instrument {instrument} --date {date}` first.")
        features_path = warehouse.path(FEATURES, venue.name, date, instrument)
        if not features_path.exists():
            raise InputsNotReady(f"{venue.name}/features {date}|{instrument} is not materialized: materialize it first.")
        features = pl.read_parquet(features_path)
        results = []
        for family, folder in families.items():
            streamed = read_partition(folder)
            label = streamed["label"][0]
            manifest = store.read_manifest(store.model_folder(root, venue.name, family, instrument, date, label))
            batch_path = warehouse.path(PREDICTIONS, venue.name, date, instrument, model=family)
            batch = pl.read_parquet(batch_path).filter(pl.col("label") == label) if batch_path.exists() else None
            result = evaluate(streamed, features, manifest, batch)
            results.append({"model": family, "label": label, **{k: v for k, v in result.items() if k != "calibration"},
                            "calibration": json.dumps(result["calibration"])})
        frame = pl.DataFrame(results, infer_schema_length=None)
        summary = [{k: r.get(k) for k in ("model", *HEADLINE)} for r in results]
        yield dg.Output(frame, "stream_evaluation", metadata={
            "evaluation": dg.MetadataValue.md(markdown_table(summary)),
            "models": len(results),
        })
        once = all(r["missing"] == 0 and r["duplicated"] == 0 and r["unexpected"] == 0 for r in results)
        yield dg.AssetCheckResult(asset_key=key, check_name="every_event_once", passed=once,
                                  metadata={r["model"]: f"missing {r['missing']}, duplicated {r['duplicated']}, "
                                            f"unexpected {r['unexpected']} of {r['expected']}" for r in results})
        compared = [r for r in results if r.get("compared_with_batch")]
        yield dg.AssetCheckResult(asset_key=key, check_name="agrees_with_batch", severity=dg.AssetCheckSeverity.WARN,
                                  passed=all(r["agreement"] == 1.0 for r in compared),
                                  metadata={r["model"]: f"{r['agreement']:.4%} of {r['compared_with_batch']} events "
                                            f"(largest p_up difference {r['max_p_up_difference']:.2e})" for r in compared}
                                  or {"compared": "no batch predictions of the same version"})

    return [sink, stream_evaluation]
