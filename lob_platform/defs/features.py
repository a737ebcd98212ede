"""Feature-layer assets of every message venue, per (date, instrument):

validated_messages -> features -> fit (bin_edges, label_thresholds) -> event_tokens + token_sequences
                              \\-> labels (ternary, thresholds from the fit)

The fit for day D reads the features of up to ``train_days`` earlier days with data (the
partition mapping reaches back ``FIT_LOOKBACK_DAYS`` calendar days); with no earlier day it fits
on the first part of a chronological split of D, and D's tokens and labels say which rows
were the training part. Assets sit in group ``{venue}_features`` and run in ``ingest_{venue}``.
"""


import dagster as dg
import polars as pl

from lob_platform.defs.partitions import VENUES, by_date_and_instrument
from lob_platform.defs.raw import day_of, time_span
from lob_platform.defs.resources import MANY_PARTITIONS
from lob_platform.defs.validated import VALID_TABLE
from lob_platform.errors import ConfigError
from lob_platform.features.labels import fit_label_thresholds, ternary_labels
from lob_platform.features.quality import label_balance, non_finite_counts, summary_table, unexpected_null_counts
from lob_platform.features.table import FeatureConfig, build_features
from lob_platform.features.training_window import TrainingWindow, training_window
from lob_platform.sources.catalog import Venue
from lob_platform.tokens.bins import BinEdges, compute_token_bins, fit_bins
from lob_platform.tokens.quality import empty_bins, expected_sequences, non_monotonic_edges, tokens_outside_vocabulary
from lob_platform.tokens.sequences import SEQ_LEN, STRIDE, token_sequences

FIT_LOOKBACK_DAYS = 14
SUMMARY_COLUMNS = ["price_change_ticks", "log_size", "log_inter_arrival_s", "level", "spread_ticks",
                   "microprice_offset_ticks", "queue_imbalance", "depth_imbalance", "ofi_l1_50ev", "return_10ev",
                   "realized_vol_10s"]


class TrainingWindowConfig(dg.Config):
    train_days: int = 5
    """How many earlier days with data the fit learns from."""
    train_fraction: float = 0.6
    """With no earlier day: the share of the day (from its start) the fit learns from; the rest
    splits evenly into validation and test."""
    flat_share: float = 1 / 3
    """Share of training rows the ternary label threshold leaves flat."""


class SequenceConfig(dg.Config):
    seq_len: int = SEQ_LEN
    stride: int = STRIDE


def feature_key(venue: Venue, table: str) -> dg.AssetKey:
    return dg.AssetKey([venue.name, table])


def feature_group(venue: Venue) -> str:
    return f"{venue.name}_features"


def tick_of(venue: Venue, instrument: str) -> float:
    tick = venue.tick_for(instrument)
    if tick is None:
        raise ConfigError(f"{venue.name} has no tick size for {instrument}: set tick_size in its ExchangeConfig "
                          "(data/venues.toml) so prices can be measured in ticks.")
    return tick


def _training_window_mapping() -> dg.MultiPartitionMapping:
    return dg.MultiPartitionMapping({
        "date": dg.DimensionPartitionMapping("date", dg.TimeWindowPartitionMapping(start_offset=-FIT_LOOKBACK_DAYS, end_offset=0)),
        "instrument": dg.DimensionPartitionMapping("instrument", dg.IdentityPartitionMapping()),
    })


def _check(key: dg.AssetKey, name: str, passed: bool, description: str, blocking: bool = True, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(asset_key=key, check_name=name, passed=bool(passed), description=description,
                               severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
                               metadata=metadata)


def build_features_asset(venue: Venue) -> dg.AssetsDefinition:
    key = feature_key(venue, "features")
    checks = [dg.AssetCheckSpec("finite_features", asset=key, blocking=True,
                                description="no NaN or infinity; nulls only where the documented rules allow them"),
              dg.AssetCheckSpec("label_balance", asset=key, description="next-move labels exist and neither direction "
                                "takes more than 80% (a warning: a quiet day still gets tokens)")]

    @dg.multi_asset(
        name=f"{venue.name}_features",
        outs={"features": dg.AssetOut(key=key, kinds={"polars", "parquet"}, description=(
            f"{venue.name} features per event: event features (seed 000), book features and label_* look-ahead "
            "columns where the venue has a book (lob_platform.features)."))},
        ins={"messages": dg.AssetIn(key=feature_key(venue, VALID_TABLE["messages"]))},
        partitions_def=by_date_and_instrument[venue.name],
        check_specs=checks,
        group_name=feature_group(venue),
    )
    def features_asset(context: dg.AssetExecutionContext, messages: pl.DataFrame):
        _, instrument = day_of(context)
        features = build_features(messages, tick_of(venue, instrument), FeatureConfig())
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


def build_fit_assets(venue: Venue) -> dg.AssetsDefinition:
    edges_key, thresholds_key = feature_key(venue, "bin_edges"), feature_key(venue, "label_thresholds")
    outs = {"bin_edges": dg.AssetOut(key=edges_key, kinds={"polars", "parquet"}, description=(
        "Quantile bin edges per event feature (one row per feature), fit on the training window before this date."))}
    if venue.has_book:
        outs["label_thresholds"] = dg.AssetOut(key=thresholds_key, kinds={"polars", "parquet"}, description=(
            "Ternary-label threshold per horizon, fit on the same training window."))
    checks = [dg.AssetCheckSpec("edges_monotonic", asset=edges_key, blocking=True, description="edges strictly increase"),
              dg.AssetCheckSpec("no_empty_bin", asset=edges_key, blocking=True,
                                description="every bin holds at least one training row")]

    @dg.multi_asset(
        name=f"{venue.name}_fit_training_window",
        outs=outs,
        ins={"features": dg.AssetIn(key=feature_key(venue, "features"), partition_mapping=_training_window_mapping(),
                                    metadata=MANY_PARTITIONS)},
        partitions_def=by_date_and_instrument[venue.name],
        check_specs=checks,
        group_name=feature_group(venue),
    )
    def fit(context: dg.AssetExecutionContext, config: TrainingWindowConfig, features: dict[str, pl.DataFrame]):
        date, _ = day_of(context)
        window = training_window({k.split("|")[0]: v for k, v in features.items()}, date, config.train_days, config.train_fraction)
        bins = fit_bins(window.rows, BinEdges())
        provenance = {"fit_scope": window.scope, "fit_dates": ",".join(window.dates), "fit_train_fraction": window.train_fraction}
        yield dg.Output(bins.to_frame().with_columns(**{k: pl.lit(v) for k, v in provenance.items()}), "bin_edges", metadata={
            "fit_on": window.describe(), "bins": dg.MetadataValue.json({f: bins.bins(f) for f in bins.edges}),
            "edges": dg.MetadataValue.json({f: list(e) for f, e in bins.edges.items()}),
        })
        if venue.has_book:
            thresholds = fit_label_thresholds(window.rows, flat_share=config.flat_share)
            frame = pl.DataFrame({"horizon_events": list(thresholds), "threshold": list(thresholds.values())},
                                 schema={"horizon_events": pl.UInt16, "threshold": pl.Float64})
            yield dg.Output(frame.with_columns(flat_share=pl.lit(config.flat_share), fit_rows=pl.lit(window.rows.height),
                                               **{k: pl.lit(v) for k, v in provenance.items()}),
                            "label_thresholds", metadata={"fit_on": window.describe(),
                                                          "thresholds": dg.MetadataValue.json(thresholds)})
        yield from fit_checks(edges_key, bins, window)

    return fit


def fit_checks(key: dg.AssetKey, bins: BinEdges, window: TrainingWindow) -> list[dg.AssetCheckResult]:
    unordered = non_monotonic_edges(bins)
    empty = empty_bins(window.rows, bins) if window.rows.height else {f: [0] for f in bins.edges}
    return [
        _check(key, "edges_monotonic", not unordered, "edges strictly increase", features=dg.MetadataValue.json(unordered)),
        _check(key, "no_empty_bin", not empty,
               "every bin holds training rows" if window.rows.height else "no training rows: nothing to fit on",
               empty_bins=dg.MetadataValue.json(empty), fit_on=window.describe()),
    ]


def build_token_assets(venue: Venue) -> dg.AssetsDefinition:
    tokens_key, sequences_key = feature_key(venue, "event_tokens"), feature_key(venue, "token_sequences")
    checks = [dg.AssetCheckSpec("tokens_in_vocabulary", asset=tokens_key, blocking=True,
                                description="every token is below its column's vocabulary size"),
              dg.AssetCheckSpec("sequence_count", asset=sequences_key, blocking=True,
                                description="one sequence per window of seq_len events every stride events, tail included")]

    @dg.multi_asset(
        name=f"{venue.name}_tokenize",
        outs={
            "event_tokens": dg.AssetOut(key=tokens_key, kinds={"polars", "parquet"}, description=(
                "Tokens per event (bin, coarse and fine per binned feature; event type and side), with the "
                "bin edges fit before this date.")),
            "token_sequences": dg.AssetOut(key=sequences_key, kinds={"polars", "parquet"}, description=(
                "Overlapping windows over event_tokens (first/last event row, source line, time, split).")),
        },
        ins={"features": dg.AssetIn(key=feature_key(venue, "features")),
             "bin_edges": dg.AssetIn(key=feature_key(venue, "bin_edges"))},
        partitions_def=by_date_and_instrument[venue.name],
        check_specs=checks,
        group_name=feature_group(venue),
    )
    def tokenize(config: SequenceConfig, features: pl.DataFrame, bin_edges: pl.DataFrame):
        bins = BinEdges.from_frame(bin_edges)
        tokens = compute_token_bins(features, bins)
        split = fit_window(bin_edges).split_of(tokens.height)
        sequences = token_sequences(tokens, split, config.seq_len, config.stride)
        vocabulary = bins.vocabulary()
        yield dg.Output(tokens, "event_tokens", metadata={
            "rows": tokens.height, "vocabulary": dg.MetadataValue.json(vocabulary),
            "token_counts": dg.MetadataValue.json({c: tokens[c].value_counts().sort(c).rows() for c in vocabulary}),
        })
        yield dg.Output(sequences, "token_sequences", metadata={
            "sequences": sequences.height, "seq_len": config.seq_len, "stride": config.stride,
            "by_split": dg.MetadataValue.json(dict(sequences["split"].value_counts().rows())) if sequences.height else {},
        })
        outside = tokens_outside_vocabulary(tokens, vocabulary)
        expected = expected_sequences(tokens.height, config.seq_len, config.stride)
        yield _check(tokens_key, "tokens_in_vocabulary", not outside, "every token inside its vocabulary",
                     outside=dg.MetadataValue.json(outside))
        yield _check(sequences_key, "sequence_count", sequences.height == expected,
                     f"{sequences.height} sequences for {tokens.height} events (expected {expected})"
                     + ("; the day is shorter than seq_len" if tokens.height < config.seq_len else ""),
                     sequences=sequences.height, expected=expected)

    return tokenize


def fit_window(fit_table: pl.DataFrame) -> TrainingWindow:
    """The training window recorded in a fit table (bin_edges or label_thresholds)."""
    return TrainingWindow(pl.DataFrame(), fit_table["fit_scope"][0], fit_table["fit_dates"][0].split(","),
                          fit_table["fit_train_fraction"][0])


def build_labels_asset(venue: Venue) -> dg.AssetsDefinition:
    @dg.asset(
        key=feature_key(venue, "labels"),
        ins={"features": dg.AssetIn(key=feature_key(venue, "features")),
             "label_thresholds": dg.AssetIn(key=feature_key(venue, "label_thresholds"))},
        partitions_def=by_date_and_instrument[venue.name],
        group_name=feature_group(venue),
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


MESSAGE_VENUES = [venue for venue in VENUES if venue.table == "messages"]
feature_assets = [
    *(build_features_asset(venue) for venue in MESSAGE_VENUES),
    *(build_fit_assets(venue) for venue in MESSAGE_VENUES),
    *(build_token_assets(venue) for venue in MESSAGE_VENUES),
    *(build_labels_asset(venue) for venue in MESSAGE_VENUES if venue.has_book),
]
FEATURE_KEYS = [key for assets in feature_assets for key in assets.keys]
