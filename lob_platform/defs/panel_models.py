"""The panel forecasters of the crypto venue, daily partitioned by training-end date D:

    panel_5s (the window's days and D) -> transformer_{1,2,3,5}min_{btc,eth,sol,wld}/forecast_metrics (16)
                                       -> ssm_hippo/forecast_metrics + ssm_hippo/forecasts
    every forecast_metrics of D ------> panel_forecast_summary

- **The 16 Jung & Lee transformers** are one multi-asset with a subsettable output per (horizon,
  pair): selecting one model, every pair of a horizon (``crypto/transformer_1min_*``), every
  horizon of a pair (``crypto/transformer_*_btc``) or all sixteen runs one step that trains the
  selected models together on the same input windows (``lob_platform.training.panel``). Each
  model is saved in the model store (best and final checkpoints with optimiser state, target
  indices, configuration and history); its asset is its out-of-sample errors on D beside
  persistence and DLinear (DuckDB view ``forecast_metrics``, hive key ``model`` = its name).
- **SSM-HiPPO**: its errors, and its forecasts of D (the market-making backtest reads them).
- **panel_forecast_summary**: every model of D side by side (markdown in the UI, DuckDB view
  ``panel_forecast_summary``) with a plot of forecast against realised for one pair.

The window of D is the last ``train_days`` dates before D with a crypto file, each of which must
have its panel (the step names those it waits for); with no earlier date, the first part of D
(``training.train_fraction``) trains and the rest is split into validation and test. Training
steps run in the ``gpu`` pool with the GPU tags of every training step.
"""

import dataclasses
import io
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import torch

from lob_platform.core.settings import Settings, warehouse_root
from lob_platform.datasets.panel import SSM_CHANNELS
from lob_platform.defs.models import markdown_table
from lob_platform.defs.run_config import spec_config
from lob_platform.defs.partitions import trading_date
from lob_platform.defs.raw import venue_key
from lob_platform.deploy.pools import GPU_POOL, GPU_STEP_TAGS
from lob_platform.features.training_window import WindowPlan, plan_training_window
from lob_platform.lineage import FORECAST_METRICS, FORECASTS, PANEL, InputsNotReady, Warehouse
from lob_platform.models.specs import HORIZONS, PANEL_PAIRS, PanelTrainingSpec, PanelTransformerSpec, SSMHippoSpec
from lob_platform.sources.registry import Venue
from lob_platform.training import plots, store
from lob_platform.training.panel_forecast import ForecastResult, checkpoint, fit_ssm, fit_transformers, transformer_name
from lob_platform.training.sequence import device

SSM = "ssm_hippo"
SUMMARY = "panel_forecast_summary"
GROUP = "crypto_panel_models"


def transformer_models() -> list[tuple[str, str]]:
    """Every (horizon, pair) of the sixteen, in horizon then pair order."""
    return [(h, p) for h in HORIZONS for p in PANEL_PAIRS]


# ---- run configuration


def spec_for_run(spec, config: dg.Config):
    values = {k: v for k, v in config.model_dump().items() if v is not None}
    training_names = {f.name for f in dataclasses.fields(PanelTrainingSpec)}
    training = dataclasses.replace(spec.training, **{k: v for k, v in values.items() if k in training_names})
    return dataclasses.replace(spec, training=training, **{k: v for k, v in values.items() if k not in training_names})


TransformerConfig = spec_config("PanelTransformerConfig", "Overrides of the panel transformers' spec for one run (every "
                                "selected model).", (PanelTransformerSpec, PanelTrainingSpec), frozenset({"horizons", "pairs"}))
SSMConfig = spec_config("SSMHippoConfig", "Overrides of the SSM-HiPPO spec for one run.", (SSMHippoSpec, PanelTrainingSpec),
                        frozenset({"horizons", "pairs"}))


# ---- the training window


def panel_window(venue: Venue, date: str, settings: Settings) -> WindowPlan:
    """The dates a forecaster of ``date`` learns from (module docstring), or those it waits for."""
    warehouse = Warehouse(warehouse_root())
    dates = sorted({d.date.isoformat() for d in venue.catalogue().days if d.venue == venue.name})
    status = lambda day: "passed" if warehouse.path(PANEL, venue.name, day).exists() else "pending"  # noqa: E731
    plan = plan_training_window(date, dates, status, settings.training.train_days, settings.training.lookback_days)
    waiting = [*plan.waiting_for, *([] if status(date) == "passed" else [date])]
    if waiting:
        raise InputsNotReady(f"the panel forecasters of {date} wait for the panel of {', '.join(waiting)}: "
                             f"materialize {venue.name}/{PANEL} for those dates first.")
    return plan


def read_panels(venue: Venue, plan: WindowPlan) -> dict[str, pl.DataFrame]:
    warehouse = Warehouse(warehouse_root())
    return {d: warehouse.read(PANEL, venue.name, d) for d in sorted({*plan.dates, plan.date})}


# ---- the store and the tables


def save_model(venue: Venue, result: ForecastResult, date: str, target: str, spec, plan: WindowPlan, plot: bytes) -> tuple[str, Path]:
    """Save the best model (``model.pt``), the seed's best and final checkpoints and the plot; return
    (version, folder)."""
    root = warehouse_root()
    folder = store.model_folder(root, venue.name, result.name, target, date, f"{result.task.horizon}steps")
    config = dataclasses.asdict(spec)
    files = {"forecast_vs_realised.png": plot}
    for which in ("best", "final"):
        buffer = io.BytesIO()
        torch.save(checkpoint(result, config, which), buffer)
        files[f"{which}_model.pt"] = buffer.getvalue()
    manifest = {"family": result.name, "label": f"{result.task.horizon}steps", "target": target, "config": config,
                "target_indices": result.task.columns.tolist(), "scaler": result.scaler.as_dict(), "fit_scope": plan.scope,
                "fit_dates": list(plan.dates), "history": result.trained.history, "best_epoch": result.trained.best_epoch,
                "stopped_epoch": result.trained.stopped_epoch, "summary": result.summary}
    return store.save(folder, manifest, result.module, files), folder


def metrics_frame(result: ForecastResult, version: str, target: str, plan: WindowPlan) -> pl.DataFrame:
    """The model's errors per metric and horizon step (value: the model) beside persistence and DLinear,
    then its whole-horizon scores (step null)."""
    rows = [{"metric": f"{r['quantity']}_{r['stat']}", "step": r["step"], "value": r["model"],
             "persistence": r["persistence"], "dlinear": r["dlinear"]} for r in result.errors]
    s = result.summary
    rows.append({"metric": "direction_accuracy", "step": None, "value": s["direction_accuracy"], "persistence": 0.0,
                 "dlinear": s["direction_accuracy_dlinear"]})
    rows += [{"metric": k, "step": None, "value": s[k], "persistence": 0.0, "dlinear": None}
             for k in ("crossed_share", "non_monotone_share") if k in s]
    return pl.DataFrame(rows, schema={"metric": pl.String, "step": pl.Int64, "value": pl.Float64, "persistence": pl.Float64,
                                      "dlinear": pl.Float64}).with_columns(
        target=pl.lit(target), horizon_steps=pl.lit(result.task.horizon), test_windows=pl.lit(s["test_windows"]),
        beats_persistence=pl.lit(s["beats_persistence"]), z_vs_persistence=pl.lit(s["z_vs_persistence"]),
        verdict=pl.lit(s["verdict"]), model_version=pl.lit(version), fit_scope=pl.lit(plan.scope),
        fit_dates=pl.lit(",".join(plan.dates)))


def _metadata(result: ForecastResult, version: str, folder: Path, plan: WindowPlan, plot: bytes, spec, loss: str) -> dict:
    s = result.summary
    return {
        "verdict": s["verdict"],
        "beats_persistence": s["beats_persistence"],
        "model_version": version,
        "store": dg.MetadataValue.path(str(folder)),
        "window": f"{plan.scope}: {', '.join(plan.dates)}",
        "summary": dg.MetadataValue.json({k: v for k, v in s.items() if k != "verdict"}),
        "forecast_vs_realised": dg.MetadataValue.md(plots.markdown_image(plot, result.name)),
        "training_curve": dg.MetadataValue.md(plots.markdown_image(plots.training_curve(result.name, "", result.trained.history, loss), result.name)),
        "config": dg.MetadataValue.json(dataclasses.asdict(spec)),
    }


# ---- assets


def build_panel_model_assets(venue: Venue, settings: Settings) -> list[dg.AssetsDefinition]:
    """The panel forecasters of ``settings.models.panel_families`` and their summary."""
    families = settings.models.panel_families
    if not families:
        return []
    panel = dg.AssetDep(venue_key(venue, PANEL), partition_mapping=dg.TimeWindowPartitionMapping(
        start_offset=-settings.training.lookback_days, end_offset=0))
    assets = [_transformers(venue, settings, panel)] if "panel_transformer" in families else []
    assets += [_ssm(venue, settings, panel)] if SSM in families else []
    return assets + [_summary(venue, settings, summarised_models(families))]


def summarised_models(families: tuple[str, ...]) -> list[str]:
    return ([transformer_name(h, p) for h, p in transformer_models()] if "panel_transformer" in families else []) + (
        [SSM] if SSM in families else [])


def _transformers(venue: Venue, settings: Settings, panel: dg.AssetDep) -> dg.AssetsDefinition:
    base = settings.models.panel_transformer
    outs = {transformer_name(h, p): dg.AssetOut(
        key=[venue.name, transformer_name(h, p), FORECAST_METRICS], kinds={"pytorch", "parquet"}, is_required=False,
        description=(f"The Jung & Lee encoder-decoder transformer forecasting the {base.target_exchange} {PANEL_PAIRS[p]} book "
                     f"(5 levels x bid/ask x price/volume) {HORIZONS[h]} steps ({h}) ahead from the whole panel, trained on "
                     "the days before this date; its out-of-sample errors on this date beside persistence and DLinear "
                     "(checkpoints in the model store)."))
        for h, p in transformer_models()}

    @dg.multi_asset(name=f"{venue.name}_panel_transformers", outs=outs, deps=[panel], partitions_def=trading_date,
                    can_subset=True, pool=GPU_POOL, op_tags=GPU_STEP_TAGS, group_name=GROUP)
    def panel_transformers(context: dg.AssetExecutionContext, config: TransformerConfig):
        date = context.partition_key
        spec = spec_for_run(base, config)
        selected = [(h, p) for h, p in transformer_models() if transformer_name(h, p) in context.op_execution_context.selected_output_names]
        plan = panel_window(venue, date, settings)
        context.log.info(f"{len(selected)} transformer(s) on {plan.scope}: {', '.join(plan.dates)}")
        results, skipped = fit_transformers(read_panels(venue, plan), date, plan.scope, settings.training.train_fraction,
                                            settings.models.validation_fraction, spec, settings.panel, selected,
                                            device(context.log.info), context.log.info)
        for name, reason in skipped.items():
            context.log.warning(f"{name} is not trained for {date}: {reason}. The other selected models are.")
        pair_of = {transformer_name(h, p): p for h, p in selected}
        for result in results:
            target = f"{spec.target_exchange}.{PANEL_PAIRS[pair_of[result.name]]}"
            plot = plots.forecast_plot(result.name, result.origins_ns, result.forecast_mid, result.realised_mid, settings.panel.step_s)
            version, folder = save_model(venue, result, date, target, spec, plan, plot)
            yield dg.Output(metrics_frame(result, version, target, plan), output_name=result.name,
                            metadata=_metadata(result, version, folder, plan, plot, spec, "MSE + structural loss (scaled)"))

    return panel_transformers


def _ssm(venue: Venue, settings: Settings, panel: dg.AssetDep) -> dg.AssetsDefinition:
    base = settings.models.ssm_hippo

    @dg.multi_asset(
        name=f"{venue.name}_ssm_hippo",
        outs={FORECAST_METRICS: dg.AssetOut(key=[venue.name, SSM, FORECAST_METRICS], kinds={"pytorch", "parquet"}, description=(
                  "The SSM-HiPPO forecaster of one exchange-pair's 24 book channels, trained on the days before this date: "
                  "its out-of-sample errors on this date beside persistence and DLinear.")),
              FORECASTS: dg.AssetOut(key=[venue.name, SSM, FORECASTS], kinds={"polars", "parquet"}, description=(
                  "SSM-HiPPO's forecasts on this date: per forecast origin (grid time) and step, the mid and spread it "
                  "forecasts and the mid that came (the market-making backtest reads them)."))},
        deps=[panel], partitions_def=trading_date, pool=GPU_POOL, op_tags=GPU_STEP_TAGS, group_name=GROUP)
    def ssm_hippo(context: dg.AssetExecutionContext, config: SSMConfig):
        date = context.partition_key
        spec = spec_for_run(base, config)
        plan = panel_window(venue, date, settings)
        result = fit_ssm(read_panels(venue, plan), date, plan.scope, settings.training.train_fraction,
                         settings.models.validation_fraction, spec, settings.panel, device(context.log.info), context.log.info)
        target = f"{spec.exchange}.{spec.pair}"
        plot = plots.forecast_plot(SSM, result.origins_ns, result.forecast_mid, result.realised_mid, settings.panel.step_s)
        version, folder = save_model(venue, result, date, target, spec, plan, plot)
        yield dg.Output(metrics_frame(result, version, target, plan), output_name=FORECAST_METRICS,
                        metadata=_metadata(result, version, folder, plan, plot, spec, "MSE + temporal coherence (scaled)"))
        yield dg.Output(forecast_frame(result, settings.panel.step_s, version), output_name=FORECASTS,
                        metadata={"model_version": version, "origins": len(result.origins_ns)})

    return ssm_hippo


def forecast_frame(result: ForecastResult, step_s: int, version: str) -> pl.DataFrame:
    """One row per forecast origin and step: the forecast mid and spread and the realised mid."""
    n, horizon = result.forecast.shape[:2]
    steps = np.tile(np.arange(1, horizon + 1), n)
    origins = np.repeat(result.origins_ns, horizon)
    return pl.DataFrame({
        "origin_ts_ns": origins, "step": steps, "target_ts_ns": origins + steps * step_s * 1_000_000_000,
        "mid_forecast": result.forecast_mid.ravel(), "spread_forecast": result.forecast[:, :, SSM_CHANNELS.index("spread")].ravel(),
        "mid_realised": result.realised_mid.ravel(), "model_version": [version] * (n * horizon),
    })


def _summary(venue: Venue, settings: Settings, models: list[str]) -> dg.AssetsDefinition:
    @dg.asset(key=[venue.name, SUMMARY], deps=[[venue.name, m, FORECAST_METRICS] for m in models], partitions_def=trading_date,
              group_name=GROUP, kinds={"polars", "parquet"}, description=(
                  "Every panel forecaster of this date side by side: its error against persistence and DLinear on the same "
                  "test windows, direction accuracy of the mid, the share of crossed or non-monotone forecast books, and "
                  "whether it beats persistence; with the forecast-against-realised plot of one pair."))
    def panel_forecast_summary(context: dg.AssetExecutionContext) -> dg.Output:
        date = context.partition_key
        warehouse = Warehouse(warehouse_root())
        rows, missing = [], []
        for model in models:
            path = warehouse.path(FORECAST_METRICS, venue.name, date, model=model)
            if not path.exists():
                missing.append(model)
                continue
            rows.append(summary_from_metrics(model, pl.read_parquet(path)))
        if not rows:
            raise InputsNotReady(f"no panel forecaster of {date} is materialized: materialize some first "
                                 f"(for example {venue.name}/{models[0]}/{FORECAST_METRICS}).")
        table = pl.DataFrame(rows, schema_overrides={"crossed_share": pl.Float64, "non_monotone_share": pl.Float64})
        plot_model = next(r["model"] for r in rows)
        plot_path = next(Path(warehouse.root, "models", f"venue={venue.name}", f"model={plot_model}").rglob(
            f"date={date}/*/forecast_vs_realised.png"), None)
        shown = ["model", "target", "horizon_steps", "mse_vs_persistence", "direction_accuracy", "crossed_share", "verdict"]
        return dg.Output(table, metadata={
            "comparison": dg.MetadataValue.md(markdown_table(table.select(shown).to_dicts())),
            "models_not_materialized": dg.MetadataValue.json(missing),
            "beating_persistence": int(table["beats_persistence"].sum()),
            "forecast_vs_realised": dg.MetadataValue.md(plots.markdown_image(plot_path.read_bytes(), plot_model)
                                                        if plot_path else "no plot"),
        })

    return panel_forecast_summary


def summary_from_metrics(model: str, frame: pl.DataFrame) -> dict:
    """A model's summary row, from its forecast_metrics partition."""
    whole = {r["metric"]: r for r in frame.filter(pl.col("step").is_null()).iter_rows(named=True)}
    error_metric = "price_bps_mse" if frame["metric"].str.starts_with("price_").any() else "mid_bps_mse"
    per_step = frame.filter(pl.col("metric") == error_metric)
    mse = {k: float(per_step[k].mean()) for k in ("value", "persistence", "dlinear")}
    ratio = mse["value"] / mse["persistence"]
    return {"model": model, "target": frame["target"][0], "horizon_steps": int(frame["horizon_steps"][0]),
            "test_windows": int(frame["test_windows"][0]), "error_metric": error_metric, "model_mse": mse["value"],
            "persistence_mse": mse["persistence"], "dlinear_mse": mse["dlinear"], "mse_vs_persistence": ratio,
            "direction_accuracy": whole["direction_accuracy"]["value"],
            "direction_accuracy_dlinear": whole["direction_accuracy"]["dlinear"],
            "crossed_share": whole.get("crossed_share", {}).get("value"),
            "non_monotone_share": whole.get("non_monotone_share", {}).get("value"),
            "beats_persistence": bool(frame["beats_persistence"][0]), "z_vs_persistence": float(frame["z_vs_persistence"][0]),
            "verdict": frame["verdict"][0], "model_version": frame["model_version"][0]}

