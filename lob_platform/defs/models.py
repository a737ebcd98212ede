"""Model assets of every venue with a book, per model family (LightGBM, logistic regression,
random forest, the LSTM) and per (date, instrument):

    features (the window's days) -> {family}/trained_models -> {family}/predictions + {family}/model_metrics
    features (day D)  ----------------------------------------^

``trained_models`` of day D trains one model per label on D's training window (the same window as
the day's fit: the last trading days before D whose validation passed, or the first part of D
when there is none) and saves each in the model store (``lob_platform.training.store``); the
partition lists them with their versions. ``predictions`` loads exactly those models (lineage:
that partition, never "the newest file") and predicts every test row of D, which no model saw;
``model_metrics`` compares them with the naive baselines on the same rows (DuckDB view
``model_metrics``). Training steps run in the ``gpu`` pool, one at a time per machine, and carry
the Kubernetes tags that request a GPU for their step.
"""

import dataclasses
import typing
from dataclasses import replace
from pathlib import Path
from typing import Optional

import dagster as dg
import numpy as np
import polars as pl
import pydantic

from lob_platform.core.settings import Settings, warehouse_root
from lob_platform.datasets.rows import evaluation_rows, purge_gap, training_rows
from lob_platform.defs.features import fit_spec_hash, resolve_window
from lob_platform.defs.partitions import by_date_and_instrument, day_of, earlier_days
from lob_platform.defs.raw import venue_key
from lob_platform.deploy.pools import GPU_POOL, GPU_STEP_TAGS
from lob_platform.features.training_window import WindowPlan
from lob_platform.core.tables import REPORT_TABLE
from lob_platform.lineage import (FEATURES, GENERATION, MODEL_METRICS, MODEL_TABLES, PREDICTIONS, TRAINED_MODELS, InputsNotReady,
                                  Warehouse)
from lob_platform.models.specs import EVENT_FAMILIES, FAMILIES, FAMILY_TITLES, TABULAR_FAMILIES, LabelSpec, ModelSpecs, SearchSpec
from lob_platform.sources.registry import Venue
from lob_platform.training import plots, store
from lob_platform.training.fit import build_module, config_hash, feature_list, input_columns, predict_day, train_family
from lob_platform.training.metrics import BASELINES, compare, reliability

KINDS = {"lightgbm": {"lightgbm"}, "logistic_regression": {"scikitlearn"}, "random_forest": {"scikitlearn"},
         "lstm": {"pytorch"}}
HEADLINE = ("accuracy", "macro_f1", "mcc", "log_loss", "brier", "ece")
TRAINED_MODELS_SCHEMA = {
    "label": pl.String, "classes": pl.String, "model_version": pl.String, "store_path": pl.String,
    "config_hash": pl.String, "labelling": pl.String, "train_rows": pl.Int64, "validation_rows": pl.Int64,
    "validation_accuracy": pl.Float64, "validation_macro_f1": pl.Float64, "validation_log_loss": pl.Float64,
    "skipped_reason": pl.String, "fit_scope": pl.String, "fit_dates": pl.String, "fit_excluded": pl.String,
    "fit_train_fraction": pl.Float64, "fit_inputs": pl.String, "spec_hash": pl.String,
}
"""One row per label: the stored model's path and version, or why the label was skipped; the
window it learnt from (``fit_*``) and the settings' hashes."""


def model_key(venue: Venue, family: str, table: str) -> dg.AssetKey:
    return dg.AssetKey([venue.name, family, table])


def model_tables(family: str) -> tuple[str, ...]:
    """The tables of a family's day: the Mamba TPP adds its generated order flow."""
    return MODEL_TABLES + ((GENERATION,) if family in EVENT_FAMILIES else ())


def model_keys(venue: Venue, families: tuple[str, ...] = FAMILIES) -> list[dg.AssetKey]:
    return [model_key(venue, f, t) for f in families for t in model_tables(f)]


# ---- run configuration: every field of a family's spec, overridable per run (launchpad, CLI)

def family_config(family: str) -> type[dg.Config]:
    """A ``dg.Config`` whose fields are the family spec's fields (and the labels, labelling and
    search budget), each optional: unset means the settings' value."""
    spec_type = type(ModelSpecs().of(family))
    hints = typing.get_type_hints(spec_type)
    hints["labels"] = list[str]  # a tuple in the spec, a list in run config
    fields = {f.name: (Optional[hints[f.name]], pydantic.Field(None, description=f"{f.name} (settings: {f.default})"))
              for f in dataclasses.fields(spec_type) if f.name != "search"}
    if family in TABULAR_FAMILIES:
        fields["n_trials"] = (Optional[int], pydantic.Field(None, description="Optuna trial budget"))
    fields.setdefault("labels", (Optional[list[str]], pydantic.Field(None, description="labels to train, e.g. next_mid_up, move_10ev")))
    fields["labelling"] = (Optional[str], pydantic.Field(None, description="three-class labels: threshold or smoothed"))
    name = "".join(part.title() for part in family.split("_")) + "Config"
    return pydantic.create_model(name, __base__=dg.Config, __doc__=f"Overrides of the {FAMILY_TITLES[family]} spec for one run.",
                                 **fields)


def specs_for_run(settings: ModelSpecs, family: str, config: dg.Config) -> ModelSpecs:
    values = {k: v for k, v in config.model_dump().items() if v is not None}
    spec = settings.of(family)
    if "labels" in values:
        values["labels"] = tuple(values["labels"])
    own_labels = hasattr(spec, "labels")  # a family with its own label list (the LSTM) takes the override there
    labels = LabelSpec(settings.labels.labels if own_labels else values.pop("labels", settings.labels.labels),
                       values.pop("labelling", settings.labels.labelling), settings.labels.flat_share)
    if "n_trials" in values:
        spec = replace(spec, search=SearchSpec(values.pop("n_trials"), spec.search.seed))
    return replace(settings.with_family(family, replace(spec, **values)), labels=labels)


# ---- trained_models


def settled_window(venue: Venue, instrument: str, date: str, settings: Settings, where: str) -> WindowPlan:
    """The training window of a model of ``date``, or an error naming the days it waits for."""
    plan = resolve_window(venue, instrument, date, settings.training)
    if not plan.ready:
        raise InputsNotReady(f"the training window of {where} is not ready: "
                             + ", ".join(f"{venue.name}/features {d}|{instrument}" for d in plan.waiting_for)
                             + " has no validation outcome or features yet; materialize it first.")
    return plan

def build_trained_models_asset(venue: Venue, family: str, settings: Settings) -> dg.AssetsDefinition:
    window = earlier_days(settings.training.lookback_days)
    title = FAMILY_TITLES[family]
    Config = family_config(family)

    @dg.asset(
        key=model_key(venue, family, TRAINED_MODELS),
        deps=[dg.AssetDep(venue_key(venue, FEATURES), partition_mapping=window),
              dg.AssetDep(venue_key(venue, REPORT_TABLE), partition_mapping=window)],
        partitions_def=by_date_and_instrument(venue.name),
        group_name=f"{venue.name}_models",
        kinds=KINDS[family],
        pool=GPU_POOL,
        op_tags=GPU_STEP_TAGS,
        check_specs=[dg.AssetCheckSpec("every_label_trained", asset=model_key(venue, family, TRAINED_MODELS), description=(
            "a model was trained for every label (a warning: a label whose window has too few labelled rows or "
            "lacks a class is skipped, with its reason, and the others go on)"))],
        description=(f"{title} models for this date, one per label, trained on the days before it (walk-forward) and "
                     "saved in the model store (warehouse/models/); one row per label with its version and window."),
    )
    def trained_models(context: dg.AssetExecutionContext, config: Config):
        date, instrument = day_of(context)
        specs = specs_for_run(settings.models, family, config)
        where = f"{venue.name} {family} {date}|{instrument}"
        plan = settled_window(venue, instrument, date, settings, where)
        warehouse = Warehouse(warehouse_root())
        days = {d: window_features(warehouse, venue, d, instrument, lambda names: input_columns(family, specs, names))
                for d in plan.dates}
        rows = training_rows({d: f for d, f in days.items() if d != date}, days.get(date), date, plan.scope,
                             settings.training.train_fraction, specs.validation_fraction,
                             purge_gap(specs.labels_of(family)))
        context.log.info(f"{title}: {plan.scope} over {', '.join(plan.dates)}: {rows.height:,} rows")
        trained, skipped = train_family(family, specs, rows, where, context.log.info)
        provenance = {"fit_scope": plan.scope, "fit_dates": ",".join(plan.dates), "fit_excluded": ",".join(plan.excluded),
                      "fit_train_fraction": settings.training.train_fraction,
                      "fit_inputs": warehouse.window_inputs(plan, venue.name, instrument),
                      "spec_hash": fit_spec_hash(settings, settings.training)}
        records, curves = [], []
        for model in trained:
            folder = store.model_folder(warehouse.root, venue.name, family, instrument, date, model.label)
            curve = plots.training_curve(family, model.label, model.history)
            manifest = {**model.manifest, "venue": venue.name, "instrument": instrument, "date": date, **provenance,
                        "history": model.history}
            version = store.save(folder, manifest, model.model, {"training_curve.png": curve})
            validation = model.manifest["validation_metrics"]
            records.append({"label": model.label, "classes": ",".join(model.manifest["classes"]), "model_version": version,
                            "store_path": str(folder.relative_to(warehouse.root)), "config_hash": model.manifest["config_hash"],
                            "labelling": specs.labels.labelling, "train_rows": model.manifest["train_rows"],
                            "validation_rows": model.manifest["validation_rows"],
                            **{f"validation_{k}": validation[k] for k in ("accuracy", "macro_f1", "log_loss")},
                            "skipped_reason": None, **provenance})
            curves.append(plots.markdown_image(curve, f"{family} {model.label}"))
        records += [{"label": s.label, "skipped_reason": s.reason, "config_hash": config_hash(family, specs),
                     "labelling": specs.labels.labelling, **provenance} for s in skipped]
        table = pl.DataFrame(records, schema=TRAINED_MODELS_SCHEMA)
        yield dg.Output(table, metadata={
            "window": f"{plan.scope}: {', '.join(plan.dates)}" + (f"; skipped {', '.join(plan.excluded)}" if plan.excluded else ""),
            "validation": dg.MetadataValue.md(markdown_table(table.filter(pl.col("model_version").is_not_null()).select(
                "label", "train_rows", "validation_rows", "validation_accuracy", "validation_macro_f1",
                "validation_log_loss").to_dicts())),
            "training_curves": dg.MetadataValue.md("\n\n".join(curves)),
            "search_or_epochs": dg.MetadataValue.json({m.label: m.history for m in trained}),
            "config": dg.MetadataValue.json(dataclasses.asdict(specs.of(family))),
        })
        yield dg.AssetCheckResult(check_name="every_label_trained", passed=not skipped,
                                  severity=dg.AssetCheckSeverity.WARN,
                                  description=f"{len(trained)} of {len(trained) + len(skipped)} labels trained",
                                  metadata={"skipped": dg.MetadataValue.json({s.label: s.reason for s in skipped})})

    return trained_models


def window_features(warehouse: Warehouse, venue: Venue, date: str, instrument: str, columns) -> pl.DataFrame:
    """The ``columns(available names)`` of one day's features, or an error naming the partition."""
    scan = warehouse.scan(FEATURES, venue.name, [date], instrument)
    if scan is None:
        raise InputsNotReady(f"{venue.name}/features {date}|{instrument} is not materialized: materialize it first.")
    return scan.select(columns(scan.collect_schema().names())).collect()


# ---- predictions and model_metrics

def build_predictions_asset(venue: Venue, family: str, settings: Settings) -> dg.AssetsDefinition:
    predictions_key, metrics_key = model_key(venue, family, PREDICTIONS), model_key(venue, family, MODEL_METRICS)
    title = FAMILY_TITLES[family]

    @dg.multi_asset(
        name=f"{venue.name}_{family}_predict",
        outs={
            "predictions": dg.AssetOut(key=predictions_key, kinds={"polars", "parquet"}, description=(
                f"{title} predictions on every test row of this date, per label: probabilities, predicted class, the "
                "event's time and source line, and the true class where the day has one.")),
            "model_metrics": dg.AssetOut(key=metrics_key, kinds={"polars", "parquet"}, description=(
                f"Out-of-sample metrics of the {title} models of this date beside the naive baselines (majority, "
                "persistence, OFI sign) on the same rows: one row per label and metric.")),
        },
        ins={"trained_models": dg.AssetIn(key=model_key(venue, family, TRAINED_MODELS)),
             "features": dg.AssetIn(key=venue_key(venue, FEATURES))},
        partitions_def=by_date_and_instrument(venue.name),
        group_name=f"{venue.name}_models",
    )
    def predict(context: dg.AssetExecutionContext, trained_models: pl.DataFrame, features: pl.DataFrame):
        date, instrument = day_of(context)
        where = f"{venue.name}/features {date}|{instrument}"
        warehouse_path = warehouse_root()
        predictions, metrics, images, summary = [], [], [], []
        for model_row in trained_models.filter(pl.col("model_version").is_not_null()).iter_rows(named=True):
            folder = Path(warehouse_path, model_row["store_path"])
            expected = {"family": family, "label": model_row["label"], "config_hash": model_row["config_hash"],
                        "features": feature_list(family, settings.models, features.columns)}
            manifest, model, version = store.load(folder, expected, build_module)
            if version != model_row["model_version"]:
                raise dg.Failure(f"the model at {folder} is version {version}, but {TRAINED_MODELS} {date}|{instrument} "
                                 f"recorded {model_row['model_version']}: it was retrained or changed since; "
                                 f"rematerialize {TRAINED_MODELS} and this asset together.")
            rows = evaluation_rows(features, date, manifest["fit_scope"], manifest["fit_train_fraction"],
                             purge_gap(tuple(trained_models["label"])))
            prediction = predict_day(manifest, model, rows, where)
            predictions.append(_prediction_frame(rows, prediction, model_row))
            labelled = prediction.y >= 0
            if not labelled.any():
                context.log.warning(f"{model_row['label']}: no labelled test row on {date} (too short a day for the "
                                    "label or the window): predictions written, no metrics")
                continue
            table = reliability(prediction.y[labelled], prediction.proba[labelled])
            diagram = plots.reliability_diagram(family, model_row["label"], table)
            store.write_atomically(folder / "reliability.png", diagram)
            images.append(plots.markdown_image(diagram, f"{family} {model_row['label']}"))
            comparison = compare(prediction.y[labelled], prediction.proba[labelled], prediction.classes,
                                 np.asarray(manifest["train_class_shares"]),
                                 {name: p[labelled] for name, p in prediction.baselines.items()})
            metrics += [{"label": model_row["label"], **row, "test_rows": int(labelled.sum()),
                         "predicted_rows": len(prediction.rows), "fit_scope": manifest["fit_scope"],
                         "model_version": model_row["model_version"]} for row in comparison]
            summary.append({"label": model_row["label"], "rows": int(labelled.sum()),
                            **{r["metric"]: r["value"] for r in comparison if r["metric"] in HEADLINE},
                            "best_baseline_accuracy": next(r["best_baseline"] for r in comparison if r["metric"] == "accuracy")})
        frame = pl.concat(predictions) if predictions else pl.DataFrame()
        metrics_frame = pl.DataFrame(metrics, schema_overrides={name: pl.Float64 for name in (*BASELINES, "best_baseline")})
        yield dg.Output(frame, "predictions", metadata={"rows": frame.height, "labels": len(predictions)})
        yield dg.Output(metrics_frame, "model_metrics", metadata={
            "out_of_sample": dg.MetadataValue.md(markdown_table(summary)),
            "reliability": dg.MetadataValue.md("\n\n".join(images)),
        })

    return predict


def _prediction_frame(rows: pl.DataFrame, prediction, model_row: dict) -> pl.DataFrame:
    classes = prediction.classes
    proba = prediction.proba
    column = {name: proba[:, i] for i, name in enumerate(classes)}
    picked = rows[prediction.rows]
    names = np.array(classes, dtype=object)
    return pl.DataFrame({
        "event_row": picked["event_row"], "ts_ns": picked["ts_ns"], "source_row": picked["source_row"],
        "label": [model_row["label"]] * len(prediction.rows),
        "true_class": pl.Series([names[y] if y >= 0 else None for y in prediction.y], dtype=pl.String),
        "predicted_class": pl.Series(names[proba.argmax(axis=1)] if len(proba) else [], dtype=pl.String),
        "p_down": column["down"], "p_flat": column.get("flat", np.full(len(proba), np.nan)), "p_up": column["up"],
        "model_version": [model_row["model_version"]] * len(prediction.rows),
    }).with_columns(pl.col("p_flat").fill_nan(None))


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "no models"
    header = list(rows[0])
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(fmt(r[h]) for h in header) + " |" for r in rows])


def build_model_assets(venue: Venue, settings: Settings) -> list[dg.AssetsDefinition]:
    return [asset for family in settings.models.families for asset in (build_trained_models_asset(venue, family, settings),
                                                       build_predictions_asset(venue, family, settings))]
