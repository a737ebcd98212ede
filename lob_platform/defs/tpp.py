"""The Mamba TPP's assets on every venue with a book, per (date, instrument):

    features (the window's days) + bin_edges (D) -> mamba_tpp/trained_models
    mamba_tpp/trained_models + features (D) -> mamba_tpp/predictions + model_metrics + generation

``trained_models`` of day D trains the temporal point process on D's training window (the window of
D's fit, tokenised with D's bin edges, so the vocabulary is the one fit on those days) and saves it
in the model store. The second step loads exactly that model and scores every test event of D
beside the baselines on the same events (the homogeneous Poisson process with marginal mark
frequencies, and the model with its context removed), then continues held-out contexts of D with
generated events and compares them with what really followed (``lob_platform.training.tpp_generation``).
Training runs in the ``gpu`` pool with the GPU tags of every training step; on CUDA with mamba-ssm
installed the blocks use its kernels, elsewhere the pure-PyTorch scan (same checkpoint).
"""

import dataclasses
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from lob_platform.core.settings import Settings, warehouse_root
from lob_platform.core.tables import REPORT_TABLE
from lob_platform.datasets.rows import evaluation_rows, training_rows
from lob_platform.defs.features import fit_spec_hash, fit_window
from lob_platform.defs.models import markdown_table, model_key, settled_window, window_features
from lob_platform.defs.partitions import by_date_and_instrument, day_of, earlier_days
from lob_platform.defs.raw import venue_key
from lob_platform.defs.run_config import spec_config
from lob_platform.deploy.pools import GPU_POOL, GPU_STEP_TAGS
from lob_platform.errors import IncompatibleCheckpoint
from lob_platform.lineage import (BIN_EDGES, FEATURES, GENERATION, MODEL_METRICS, PREDICTIONS, TRAINED_MODELS, InputsNotReady,
                                  Warehouse)
from lob_platform.models.specs import MAMBA_TPP, TPP_MARKS, MambaTPPSpec
from lob_platform.models.tpp import MambaTPP, Vocabulary
from lob_platform.sources.registry import Venue
from lob_platform.tokens.bins import BinEdges
from lob_platform.training import plots, store
from lob_platform.training.fit import config_hash
from lob_platform.training.sequence import device
from lob_platform.training.tpp import (BASELINES, COMPONENTS, FEATURE_COLUMNS, LABEL, PoissonMarginal, beats_baseline, event_stream, fit_tpp,
                                       metrics_rows, paired_standard_errors, per_event_nll, score, summary, time_scaling, uses_kernels,
                                       vocabulary)
from lob_platform.training.tpp_generation import (context_starts, distances, generate, real_continuations,
                                                  sample_unconditional)

TPP = MAMBA_TPP
TPPConfig = spec_config("MambaTPPConfig", "Overrides of the Mamba TPP spec for one run.", (MambaTPPSpec,))
TRAINED_SCHEMA = {
    "label": pl.String, "model_version": pl.String, "store_path": pl.String, "config_hash": pl.String,
    "backbone": pl.String, "kernels": pl.String, "train_events": pl.Int64, "validation_events": pl.Int64,
    "validation_loss": pl.Float64, "fit_scope": pl.String, "fit_dates": pl.String, "fit_excluded": pl.String,
    "fit_train_fraction": pl.Float64, "fit_inputs": pl.String, "spec_hash": pl.String,
}


def build_module(manifest: dict) -> MambaTPP:
    """The empty module a stored TPP's state dict loads into (the pure path: a checkpoint trained
    with mamba-ssm's kernels loads into it, with the same parameter names)."""
    return MambaTPP(MambaTPPSpec(**manifest["config"]), Vocabulary.from_dict(manifest["vocabulary"]))


def build_trained_tpp_asset(venue: Venue, settings: Settings) -> dg.AssetsDefinition:
    window = earlier_days(settings.training.lookback_days)
    key = model_key(venue, TPP, TRAINED_MODELS)

    @dg.asset(
        key=key,
        deps=[dg.AssetDep(venue_key(venue, FEATURES), partition_mapping=window),
              dg.AssetDep(venue_key(venue, REPORT_TABLE), partition_mapping=window)],
        ins={"bin_edges": dg.AssetIn(key=venue_key(venue, BIN_EDGES))},
        partitions_def=by_date_and_instrument(venue.name),
        group_name=f"{venue.name}_models",
        kinds={"pytorch"},
        pool=GPU_POOL,
        op_tags=GPU_STEP_TAGS,
        description=("The Mamba temporal point process of this date: next-event time (mixture of exponentials) and "
                     "hierarchical marks, trained on the days before it (walk-forward) with this date's bin edges and "
                     "saved in the model store; one row with its version, window and validation loss."),
    )
    def trained_tpp(context: dg.AssetExecutionContext, config: TPPConfig, bin_edges: pl.DataFrame):
        date, instrument = day_of(context)
        spec = dataclasses.replace(settings.models.mamba_tpp, **{k: v for k, v in config.model_dump().items() if v is not None})
        where = f"{venue.name} {TPP} {date}|{instrument}"
        plan = settled_window(venue, instrument, date, settings, where)
        fitted_on = fit_window(bin_edges)
        if (fitted_on.scope, list(fitted_on.dates)) != (plan.scope, list(plan.dates)):
            raise InputsNotReady(f"{venue.name}/{BIN_EDGES} {date}|{instrument} was fit on {fitted_on.scope} "
                                 f"{','.join(fitted_on.dates)}, but the training window is now {plan.scope} "
                                 f"{','.join(plan.dates)}: rematerialize the fit of this day first.")
        warehouse = Warehouse(warehouse_root())
        days = {d: window_features(warehouse, venue, d, instrument, lambda names: FEATURE_COLUMNS) for d in plan.dates}
        rows = training_rows({d: f for d, f in days.items() if d != date}, days.get(date), date, plan.scope,
                             settings.training.train_fraction, settings.models.validation_fraction, 1)
        bins = BinEdges.from_frame(bin_edges)
        scaling = time_scaling(rows.filter(pl.col("split") == "train"))
        clock_s = venue.format.clock_ns / 1e9
        stream = event_stream(rows, bins, scaling, clock_s)
        vocab = vocabulary(bins, scaling["mean_gap_s"], clock_s)
        where_to = device(context.log.info)
        model, history = fit_tpp(stream, vocab, spec, where_to, context.log.info, where)
        kernels = "mamba-ssm" if uses_kernels(spec, where_to) else "pure PyTorch"
        provenance = {"fit_scope": plan.scope, "fit_dates": ",".join(plan.dates), "fit_excluded": ",".join(plan.excluded),
                      "fit_train_fraction": settings.training.train_fraction,
                      "fit_inputs": warehouse.window_inputs(plan, venue.name, instrument),
                      "spec_hash": fit_spec_hash(settings, settings.training)}
        counts = {"train_events": int((stream.split == "train").sum()),
                  "validation_events": int((stream.split == "validation").sum())}
        manifest = {"family": TPP, "label": LABEL, "classes": list(TPP_MARKS), "features": FEATURE_COLUMNS,
                    "config": dataclasses.asdict(spec), "config_hash": config_hash(TPP, dataclasses.replace(
                        settings.models, mamba_tpp=spec)), "vocabulary": vocab.as_dict(), "scaling": scaling,
                    "bin_edges": bin_edges.select("feature", "requested_bins", "bins", "edges", "n_coarse", "fit_rows").to_dicts(),
                    "poisson_marginal": PoissonMarginal.fit(stream, vocab).as_dict(), "kernels": kernels,
                    "venue": venue.name, "instrument": instrument, "date": date, "history": history, **counts, **provenance}
        folder = store.model_folder(warehouse.root, venue.name, TPP, instrument, date, LABEL)
        curve = plots.training_curve(TPP, LABEL, history, "loss (time NLL + marks' CE)")
        version = store.save(folder, manifest, model, {"training_curve.png": curve})
        best = min(h["validation_loss"] for h in history)
        table = pl.DataFrame([{"label": LABEL, "model_version": version, "store_path": str(folder.relative_to(warehouse.root)),
                               "config_hash": manifest["config_hash"], "backbone": spec.backbone, "kernels": kernels,
                               "validation_loss": best, **counts, **provenance}], schema=TRAINED_SCHEMA)
        return dg.Output(table, metadata={
            "window": f"{plan.scope}: {', '.join(plan.dates)}", "model_version": version, "kernels": kernels,
            "device": where_to.type, "validation_loss": best, **counts,
            "training_curve": dg.MetadataValue.md(plots.markdown_image(curve, f"{TPP} {LABEL}")),
            "config": dg.MetadataValue.json(dataclasses.asdict(spec)),
        })

    return trained_tpp


def load_model(trained_models: pl.DataFrame, date: str, instrument: str) -> tuple[dict, MambaTPP, str]:
    """The model ``trained_models`` names, refused when it was changed since or made for other settings."""
    row = trained_models.row(0, named=True)
    folder = Path(warehouse_root(), row["store_path"])
    manifest, model, version = store.load(folder, {"family": TPP, "label": LABEL, "config_hash": row["config_hash"]},
                                          build_module)
    if version != row["model_version"]:
        raise IncompatibleCheckpoint(f"the model at {folder} is version {version}, but {TRAINED_MODELS} {date}|{instrument} "
                                     f"recorded {row['model_version']}: rematerialize {TRAINED_MODELS} and this asset together.")
    return manifest, model, version


def build_tpp_evaluation_asset(venue: Venue, settings: Settings) -> dg.AssetsDefinition:
    keys = {t: model_key(venue, TPP, t) for t in (PREDICTIONS, MODEL_METRICS, GENERATION)}

    @dg.multi_asset(
        name=f"{venue.name}_{TPP}_evaluate",
        outs={
            "predictions": dg.AssetOut(key=keys[PREDICTIONS], kinds={"polars", "parquet"}, description=(
                "Every test event of this date as the Mamba TPP saw it: negative log-likelihood of its time and each "
                "mark, the most probable token of each mark, the true token, the predicted median inter-arrival.")),
            "model_metrics": dg.AssetOut(key=keys[MODEL_METRICS], kinds={"polars", "parquet"}, description=(
                "The Mamba TPP's NLL per event (time, each mark, total), mark accuracy and top-3, MAE of the log "
                "inter-arrival, beside a homogeneous Poisson process with marginal marks and the model without context.")),
            "generation": dg.AssetOut(key=keys[GENERATION], kinds={"polars", "parquet"}, description=(
                "Events generated from held-out contexts of this date against the real continuation, per distribution "
                "(inter-arrival, type, side, size, price change), beside an unconditional generator.")),
        },
        ins={"trained_models": dg.AssetIn(key=model_key(venue, TPP, TRAINED_MODELS)),
             "features": dg.AssetIn(key=venue_key(venue, FEATURES))},
        check_specs=[dg.AssetCheckSpec("beats_poisson_baseline", asset=keys[MODEL_METRICS], description=(
            "the total NLL per test event is below the homogeneous Poisson process with marginal marks by more than two "
            "standard errors (a warning: on data with no structure beyond the marginals it should not be)"))],
        partitions_def=by_date_and_instrument(venue.name),
        group_name=f"{venue.name}_models",
    )
    def evaluate(context: dg.AssetExecutionContext, trained_models: pl.DataFrame, features: pl.DataFrame):
        date, instrument = day_of(context)
        manifest, model, version = load_model(trained_models, date, instrument)
        spec = model.spec
        rows = evaluation_rows(features.select(FEATURE_COLUMNS), date, manifest["fit_scope"], manifest["fit_train_fraction"], 1)
        bins = BinEdges.from_frame(pl.DataFrame(manifest["bin_edges"]))
        stream = event_stream(rows, bins, manifest["scaling"], model.vocabulary.clock_s)
        if not (stream.split == "test").sum() > 1:
            raise InputsNotReady(f"{venue.name}/features {date}|{instrument} has no test events to score.")
        scores = score(model, stream, "test")
        without_context = score(model, stream, "test", context=1)
        poisson = PoissonMarginal.from_dict(manifest["poisson_marginal"])
        baseline_scores = {"poisson_marginal": poisson.score(stream, scores.events), "context_1": without_context}
        model_summary = summary(scores, stream)
        paired = paired_standard_errors(scores, baseline_scores)
        metrics = pl.DataFrame(metrics_rows(model_summary, {n: summary(s, stream) for n, s in baseline_scores.items()}, paired),
                               schema_overrides={"difference_se": pl.Float64}).with_columns(
            test_rows=pl.lit(len(scores.events)), model_version=pl.lit(version), fit_scope=pl.lit(manifest["fit_scope"]))
        predictions = prediction_frame(rows, stream, scores, version)
        starts = context_starts(stream, "test", spec.seq_len, spec.generation_events, spec.generation_contexts)
        if not len(starts):
            context.log.warning(f"the test part of {date}|{instrument} is shorter than a context of {spec.seq_len} and "
                                f"{spec.generation_events} generated events: no generation comparison this day")
        generation = generation_frame(model, stream, starts, bins, manifest, poisson, version)
        passed, description = beats_baseline(per_event_nll(scores, "nll_total"),
                                             per_event_nll(baseline_scores["poisson_marginal"], "nll_total"))
        headline = metrics.filter(pl.col("metric").is_in(["nll_total", "nll_time", "accuracy_price_coarse", "accuracy_event_type",
                                                           "mae_log_inter_arrival"])).select("metric", "value", *BASELINES)
        yield dg.Output(predictions, "predictions", metadata={"rows": predictions.height})
        yield dg.Output(metrics, "model_metrics", metadata={
            "out_of_sample": dg.MetadataValue.md(markdown_table(headline.to_dicts())), "test_events": len(scores.events)})
        yield dg.Output(generation, "generation", metadata={
            "contexts": len(starts), "events_per_context": spec.generation_events,
            "distances": dg.MetadataValue.md(markdown_table(generation.select("distribution", "statistic", "model",
                                                                              "unconditional").to_dicts()))})
        yield dg.AssetCheckResult(check_name="beats_poisson_baseline", asset_key=keys[MODEL_METRICS], passed=passed,
                                  severity=dg.AssetCheckSeverity.WARN, description=description)

    return evaluate


def prediction_frame(rows: pl.DataFrame, stream, scores, version: str) -> pl.DataFrame:
    picked = rows[scores.events]
    columns = {"event_row": picked["event_row"], "ts_ns": picked["ts_ns"], "source_row": picked["source_row"],
               "label": [LABEL] * len(scores.events), "inter_arrival_s": stream.gap_s[scores.events],
               "predicted_median_inter_arrival_s": scores.median_gap_s}
    columns.update({f"nll_{c}": scores.nll[c] for c in COMPONENTS})
    for j, mark in enumerate(TPP_MARKS):
        columns[f"true_{mark}"] = pl.Series(stream.marks[scores.events, j], dtype=pl.UInt16)
        columns[f"predicted_{mark}"] = pl.Series(scores.predicted[mark], dtype=pl.UInt16)
    return pl.DataFrame(columns).with_columns(model_version=pl.lit(version))


def generation_frame(model: MambaTPP, stream, starts: np.ndarray, bins: BinEdges, manifest: dict, poisson: PoissonMarginal,
                     version: str) -> pl.DataFrame:
    spec = model.spec
    schema = {"distribution": pl.String, "statistic": pl.String, "model": pl.Float64, "unconditional": pl.Float64,
              "contexts": pl.Int64, "events_per_context": pl.Int64, "model_version": pl.String}
    if not len(starts):
        return pl.DataFrame(schema=schema)
    real = real_continuations(stream, starts, spec.seq_len, spec.generation_events)
    generated = generate(model, stream, starts, bins, manifest["scaling"], spec.generation_events, spec.seed)
    unconditional = sample_unconditional(poisson, len(real["gap_s"]), spec.seed)
    by_model = distances(generated, real, model.vocabulary)
    by_unconditional = distances(unconditional, real, model.vocabulary)
    return pl.DataFrame([{"distribution": d, "statistic": s, "model": by_model[(d, s)], "unconditional": by_unconditional[(d, s)],
                          "contexts": len(starts), "events_per_context": spec.generation_events, "model_version": version}
                         for d, s in by_model], schema=schema)


def build_tpp_assets(venue: Venue, settings: Settings) -> list[dg.AssetsDefinition]:
    if TPP not in settings.models.event_families:
        return []
    return [build_trained_tpp_asset(venue, settings), build_tpp_evaluation_asset(venue, settings)]
