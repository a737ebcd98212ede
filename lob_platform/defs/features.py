"""Feature-layer assets of every message venue, per (date, instrument):

validated_messages -> features -> fit (bin_edges, label_thresholds) -> event_tokens + token_sequences
                              \\-> labels (ternary, thresholds from the fit)

The fit for day D learns from the training window the catalogue of raw files defines
(``lob_platform.features.training_window``): it reads exactly those days' features, records them
with their versions (``fit_inputs``), and refuses to run while a day of the window has no
validation outcome yet, naming it. Assets sit in group ``{venue}_features``.
"""

import dagster as dg
import numpy as np
import polars as pl

from lob_platform.core.settings import SequenceSpec, Settings, TrainingWindowSpec, spec_hash, warehouse_root
from lob_platform.core.tables import REPORT_TABLE
from lob_platform.defs.partitions import by_date_and_instrument, day_of, earlier_days
from lob_platform.defs.raw import time_span, venue_key
from lob_platform.deploy.pools import CPU_POOL
from lob_platform.errors import ConfigError
from lob_platform.features.labels import fit_label_thresholds, ternary_labels
from lob_platform.features.quality import label_balance, non_finite_counts, summary_table, unexpected_null_counts
from lob_platform.features.table import build_features
from lob_platform.features.training_window import SAME_DAY_SPLIT, TrainingWindow, WindowPlan, window_rows
from lob_platform.lineage import BIN_EDGES, EVENT_TOKENS, FEATURES, LABEL_THRESHOLDS, LABELS, TOKEN_SEQUENCES, InputsNotReady, Warehouse
from lob_platform.sources.registry import Venue
from lob_platform.tokens.bins import BinEdges, bin_index, compute_token_bins, fit_bins
from lob_platform.tokens.drift import PSI_WARNING, token_drift
from lob_platform.tokens.quality import empty_bins, non_monotonic_edges, split_share_deviation, split_shares_within
from lob_platform.tokens.sequences import token_sequences

SUMMARY_COLUMNS = ["price_change_ticks", "log_size", "log_inter_arrival_s", "level", "spread_ticks",
                   "microprice_offset_ticks", "queue_imbalance", "depth_imbalance", "ofi_l1_50ev", "return_10ev",
                   "realized_vol_10s"]
SPLIT_SHARE_TOLERANCE = 0.05
"""How far each split's share of a day's sequences may be from its configured fraction, beyond the
rounding of whole sequences (one sequence's share)."""


class TrainingWindowConfig(dg.Config):
    """Overrides of the settings' training window for one run (``TrainingWindowSpec``). The
    automation refits with the settings, so an override is for an experiment."""

    train_days: int = TrainingWindowSpec.train_days
    """How many earlier trading days whose validation passed the fit learns from."""
    train_fraction: float = TrainingWindowSpec.train_fraction
    """With no earlier day: the share of the day (from its start) the fit learns from; the rest
    splits evenly into validation and test."""
    flat_share: float = TrainingWindowSpec.flat_share
    """Share of training rows the ternary label threshold leaves flat."""


def tick_of(venue: Venue, instrument: str) -> float:
    tick = venue.tick_for(instrument)
    if tick is None:
        raise ConfigError(f"{venue.name} has no tick size for {instrument}: set tick_size in its ExchangeConfig "
                          "(data/venues.toml) so prices can be measured in ticks.")
    return tick


def _check(key: dg.AssetKey, name: str, passed: bool, description: str, blocking: bool = True, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(asset_key=key, check_name=name, passed=bool(passed), description=description,
                               severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
                               metadata=metadata)


def build_features_asset(venue: Venue, settings: Settings) -> dg.AssetsDefinition:
    key = venue_key(venue, FEATURES)
    checks = [dg.AssetCheckSpec("finite_features", asset=key, blocking=True,
                                description="no NaN or infinity; nulls only where the documented rules allow them"),
              dg.AssetCheckSpec("label_balance", asset=key, description="next-move labels exist and neither direction "
                                "takes more than 80% (a warning: a quiet day still gets tokens)")]

    @dg.multi_asset(
        name=f"{venue.name}_features",
        outs={"features": dg.AssetOut(key=key, kinds={"polars", "parquet"}, description=(
            f"{venue.name} features per event: event features (seed 000), book features and label_* look-ahead "
            "columns where the venue has a book (lob_platform.features)."))},
        ins={"messages": dg.AssetIn(key=venue_key(venue, venue.kind.validated))},
        partitions_def=by_date_and_instrument(venue.name),
        check_specs=checks,
        group_name=f"{venue.name}_features",
        pool=CPU_POOL,
    )
    def features_asset(context: dg.AssetExecutionContext, messages: pl.DataFrame):
        _, instrument = day_of(context)
        features = build_features(messages, tick_of(venue, instrument), settings.features)
        bad_values, bad_nulls = non_finite_counts(features), unexpected_null_counts(features)
        has_labels = "label_next_mid_up" in features.columns
        balanced, balance = label_balance(features) if has_labels else (True, {"applies": False})
        summary = [c for c in SUMMARY_COLUMNS if c in features.columns]
        yield dg.Output(features, "features", metadata={
            "rows": features.height, "columns": features.width, **time_span(features),
            "summary": dg.MetadataValue.md(summary_table(features, summary)) if features.height else "no events",
            "label_balance": dg.MetadataValue.json(balance),
        })
        yield _check(key, "finite_features", not bad_values and not bad_nulls,
                     "every feature is finite; nulls only where allowed",
                     non_finite=dg.MetadataValue.json(bad_values), unexpected_nulls=dg.MetadataValue.json(bad_nulls))
        yield _check(key, "label_balance", balanced, "next-move labels exist and are not one-sided", blocking=False,
                     **{k: dg.MetadataValue.json(v) if isinstance(v, list) else v for k, v in balance.items() if v is not None})

    return features_asset


def resolve_window(venue: Venue, instrument: str, date: str, training: TrainingWindowSpec) -> WindowPlan:
    """The training window of an instrument-day as the catalogue and the warehouse say it is now."""
    catalogue_dates = venue.catalogue().dates_of(venue.name, instrument)
    return Warehouse(warehouse_root()).fit_plan(venue.name, instrument, date, catalogue_dates, training.train_days,
                                                training.lookback_days)


def fit_spec_hash(settings: Settings, training: TrainingWindowSpec) -> str:
    """The hash every fitted table of a message venue records: features, bins and window specs."""
    return spec_hash(settings.features, settings.bins, training)


def build_fit_assets(venue: Venue, settings: Settings) -> dg.AssetsDefinition:
    edges_key, thresholds_key = venue_key(venue, BIN_EDGES), venue_key(venue, LABEL_THRESHOLDS)
    outs = {"bin_edges": dg.AssetOut(key=edges_key, kinds={"polars", "parquet"}, description=(
        "Quantile bin edges per event feature (one row per feature), fit on the training window before this date; "
        "fit_inputs names the feature partitions and versions the fit chain read."))}
    if venue.has_book:
        outs["label_thresholds"] = dg.AssetOut(key=thresholds_key, kinds={"polars", "parquet"}, description=(
            "Ternary-label threshold per horizon, fit on the same training window."))
    checks = [dg.AssetCheckSpec("edges_monotonic", asset=edges_key, blocking=True, description="edges strictly increase"),
              dg.AssetCheckSpec("no_empty_bin", asset=edges_key, blocking=True,
                                description="every bin holds at least one training row")]
    window = earlier_days(settings.training.lookback_days)

    @dg.multi_asset(
        name=f"{venue.name}_fit_training_window",
        outs=outs,
        deps=[dg.AssetDep(venue_key(venue, FEATURES), partition_mapping=window),
              dg.AssetDep(venue_key(venue, REPORT_TABLE), partition_mapping=window)],
        partitions_def=by_date_and_instrument(venue.name),
        check_specs=checks,
        group_name=f"{venue.name}_features",
    )
    def fit(context: dg.AssetExecutionContext, config: TrainingWindowConfig):
        date, instrument = day_of(context)
        training = TrainingWindowSpec(config.train_days, settings.training.lookback_days, config.train_fraction,
                                      config.flat_share)
        plan = resolve_window(venue, instrument, date, training)
        if not plan.ready:
            raise InputsNotReady(
                f"the training window of {venue.name} {date}|{instrument} is not ready: "
                + ", ".join(f"{venue.name}/validation_reports and features {d}|{instrument}" for d in plan.waiting_for)
                + " (a trading day in the data folder) has no validation outcome or features yet. Materialize it first; "
                "the refit_training_windows sensor fits this day on its own once it has.")
        warehouse = Warehouse(warehouse_root())
        if not warehouse.path(FEATURES, venue.name, date, instrument).exists():
            raise InputsNotReady(f"{venue.name}/features {date}|{instrument} is not materialized: materialize it first.")
        fitted = [*settings.bins.bin_counts, *(f"label_return_{k}ev" for k in settings.features.label_horizons if venue.has_book)]
        rows = window_rows(plan, lambda days: warehouse.scan(FEATURES, venue.name, days, instrument).select(fitted).collect(),
                           training.train_fraction)
        bins = fit_bins(rows.rows, settings.bins)
        provenance = {"fit_scope": rows.scope, "fit_dates": ",".join(rows.dates), "fit_train_fraction": rows.train_fraction,
                      "fit_excluded": ",".join(rows.excluded), "fit_inputs": warehouse.fit_inputs(plan, venue.name, instrument),
                      "spec_hash": fit_spec_hash(settings, training)}
        edges = bins.to_frame().with_columns(train_bin_counts=pl.Series(training_bin_counts(rows.rows, bins)),
                                             **{k: pl.lit(v) for k, v in provenance.items()})
        inputs = dg.MetadataValue.md("| input | version |\n|---|---|\n" + "\n".join(
            f"| {name} | {version} |" for name, version in (item.split("=") for item in provenance["fit_inputs"].split(","))))
        yield dg.Output(edges, "bin_edges", metadata={
            "fit_on": rows.describe(), "inputs": inputs, "spec_hash": provenance["spec_hash"],
            "bins": dg.MetadataValue.json({f: bins.bins(f) for f in bins.edges}),
            "edges": dg.MetadataValue.json({f: list(e) for f, e in bins.edges.items()}),
        })
        if venue.has_book:
            thresholds = fit_label_thresholds(rows.rows, settings.features.label_horizons, training.flat_share)
            frame = pl.DataFrame({"horizon_events": list(thresholds), "threshold": list(thresholds.values())},
                                 schema={"horizon_events": pl.UInt16, "threshold": pl.Float64})
            yield dg.Output(frame.with_columns(flat_share=pl.lit(training.flat_share), fit_rows=pl.lit(rows.rows.height),
                                               **{k: pl.lit(v) for k, v in provenance.items()}),
                            "label_thresholds", metadata={"fit_on": rows.describe(), "inputs": inputs,
                                                          "thresholds": dg.MetadataValue.json(thresholds)})
        yield from fit_checks(edges_key, bins, rows)

    return fit


def training_bin_counts(rows: pl.DataFrame, bins: BinEdges) -> list[list[int]]:
    """Per fitted feature (the bin-edge table's row order), how many training rows fall in each token
    of ``{feature}_bin`` (null token last): the reference the drift check compares a day with."""
    return [np.bincount(bin_index(rows[f], bins.edges[f]), minlength=bins.bins(f) + 1).tolist() if rows.height
            else [0] * (bins.bins(f) + 1) for f in bins.edges]


def fit_checks(key: dg.AssetKey, bins: BinEdges, window: TrainingWindow) -> list[dg.AssetCheckResult]:
    unordered = non_monotonic_edges(bins)
    empty = empty_bins(window.rows, bins) if window.rows.height else {f: [0] for f in bins.edges}
    return [
        _check(key, "edges_monotonic", not unordered, "edges strictly increase", features=dg.MetadataValue.json(unordered)),
        _check(key, "no_empty_bin", not empty,
               "every bin holds training rows" if window.rows.height else "no training rows: nothing to fit on",
               empty_bins=dg.MetadataValue.json(empty), fit_on=window.describe()),
    ]


def fit_window(fit_table: pl.DataFrame) -> TrainingWindow:
    """The training window recorded in a fit table (bin_edges or label_thresholds)."""
    excluded = fit_table["fit_excluded"][0]
    return TrainingWindow(pl.DataFrame(), fit_table["fit_scope"][0], fit_table["fit_dates"][0].split(","),
                          fit_table["fit_train_fraction"][0], excluded.split(",") if excluded else [])


def expected_split_shares(window: TrainingWindow) -> dict[str, float]:
    """The share of a day's sequences each split should take under this fit."""
    if window.scope != SAME_DAY_SPLIT:
        return {"train": 0.0, "validation": 0.0, "test": 1.0}
    held_out = (1 - window.train_fraction) / 2
    return {"train": window.train_fraction, "validation": held_out, "test": held_out}


class SequenceConfig(dg.Config):
    """Overrides of the settings' ``SequenceSpec`` for one run."""

    seq_len: int = SequenceSpec.seq_len
    stride: int = SequenceSpec.stride


def build_token_assets(venue: Venue, settings: Settings) -> dg.AssetsDefinition:
    tokens_key, sequences_key = venue_key(venue, EVENT_TOKENS), venue_key(venue, TOKEN_SEQUENCES)
    checks = [dg.AssetCheckSpec("token_drift", asset=tokens_key, description=(
                  f"population stability index of each binned token column against the training window is at most "
                  f"{PSI_WARNING} (a warning: the bins no longer describe the day well)")),
              dg.AssetCheckSpec("split_shares", asset=sequences_key, blocking=True, description=(
                  "each split's share of the day's sequences is its configured fraction (within "
                  f"{SPLIT_SHARE_TOLERANCE:.0%} plus one sequence); a day with no sequence fails"))]

    @dg.multi_asset(
        name=f"{venue.name}_tokenize",
        outs={
            "event_tokens": dg.AssetOut(key=tokens_key, kinds={"polars", "parquet"}, description=(
                "Tokens per event (bin, coarse and fine per binned feature; event type and side), with the "
                "bin edges fit before this date.")),
            "token_sequences": dg.AssetOut(key=sequences_key, kinds={"polars", "parquet"}, description=(
                "Overlapping windows over event_tokens (first/last event row, source line, time, split).")),
        },
        ins={"features": dg.AssetIn(key=venue_key(venue, FEATURES)), "bin_edges": dg.AssetIn(key=venue_key(venue, BIN_EDGES))},
        partitions_def=by_date_and_instrument(venue.name),
        check_specs=checks,
        group_name=f"{venue.name}_features",
    )
    def tokenize(config: SequenceConfig, features: pl.DataFrame, bin_edges: pl.DataFrame):
        bins = BinEdges.from_frame(bin_edges)
        tokens = compute_token_bins(features, bins)
        window = fit_window(bin_edges)
        sequences = token_sequences(tokens, window.split_of(tokens.height), config.seq_len, config.stride)
        vocabulary = bins.vocabulary()
        yield dg.Output(tokens, "event_tokens", metadata={
            "rows": tokens.height, "vocabulary": dg.MetadataValue.json(vocabulary),
            "token_counts": dg.MetadataValue.json({c: tokens[c].value_counts().sort(c).rows() for c in vocabulary}),
        })
        yield dg.Output(sequences, "token_sequences", metadata={
            "sequences": sequences.height, "seq_len": config.seq_len, "stride": config.stride,
            "by_split": dg.MetadataValue.json(dict(sequences["split"].value_counts().rows())) if sequences.height else {},
        })
        reference = {f"{f}_bin": counts for f, counts in zip(bin_edges["feature"], bin_edges["train_bin_counts"].to_list())
                     if sum(counts) and bin_edges.filter(pl.col("feature") == f)["bins"][0] > 1}
        drift = token_drift(tokens, reference, vocabulary) if tokens.height else {}
        drifted = {c: psi for c, psi in drift.items() if psi > PSI_WARNING}
        yield _check(tokens_key, "token_drift", not drifted,
                     f"{len(drifted)} token column(s) drifted beyond PSI {PSI_WARNING}" if drifted else "no column drifted",
                     blocking=False, psi=dg.MetadataValue.json(drift), fit_on=window.describe())
        shares = split_share_deviation(sequences["split"].cast(pl.String), expected_split_shares(window))
        tolerance = SPLIT_SHARE_TOLERANCE + (1 / sequences.height if sequences.height else 0)
        passed = sequences.height > 0 and split_shares_within(shares, tolerance)
        yield _check(sequences_key, "split_shares", passed,
                     f"{sequences.height} sequences of {tokens.height} events" + (
                         "; the day is shorter than seq_len" if not sequences.height else ""),
                     shares=dg.MetadataValue.json(shares), tolerance=tolerance)

    return tokenize


def build_labels_asset(venue: Venue) -> dg.AssetsDefinition:
    @dg.asset(
        key=venue_key(venue, LABELS),
        ins={"features": dg.AssetIn(key=venue_key(venue, FEATURES)),
             "label_thresholds": dg.AssetIn(key=venue_key(venue, LABEL_THRESHOLDS))},
        partitions_def=by_date_and_instrument(venue.name),
        group_name=f"{venue.name}_features",
        kinds={"polars", "parquet"},
        description="Per event: next-move direction and ternary moves at 10/20/50/100 events (thresholds fit before this date), with the split.",
    )
    def labels(features: pl.DataFrame, label_thresholds: pl.DataFrame) -> dg.Output:
        thresholds = dict(zip(label_thresholds["horizon_events"].to_list(), label_thresholds["threshold"].to_list()))
        frame = pl.concat([
            features.select("event_row", "ts_ns", "source_row", "label_next_mid_up"),
            ternary_labels(features, thresholds),
            fit_window(label_thresholds).split_of(features.height).to_frame(),
        ], how="horizontal")
        shares = {c: dict(frame[c].drop_nulls().value_counts(normalize=True).sort(c).rows())
                  for c in frame.columns if c.startswith("label_move_")}
        return dg.Output(frame, metadata={"rows": frame.height, "class_shares": dg.MetadataValue.json(
            {c: {str(k): round(v, 4) for k, v in s.items()} for c, s in shares.items()}),
            "thresholds": dg.MetadataValue.json(thresholds)})

    return labels


def build_feature_assets(venue: Venue, settings: Settings) -> list[dg.AssetsDefinition]:
    assets = [build_features_asset(venue, settings), build_fit_assets(venue, settings), build_token_assets(venue, settings)]
    return assets + ([build_labels_asset(venue)] if venue.has_book else [])

