"""The features table of one instrument-day: event features, book features (where the venue has
a book) and the look-ahead labels, one row per validated event, in event order."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from lob_platform.features.book import BookFeatureConfig, compute_book_features
from lob_platform.features.events import EVENT_INPUT, compute_derived_features
from lob_platform.features.inputs import check_feature_input
from lob_platform.features.labels import LABEL_HORIZONS, compute_labels
from lob_platform.core.columns import book_levels


@dataclass(frozen=True)
class FeatureConfig:
    book: BookFeatureConfig = field(default_factory=BookFeatureConfig)
    label_horizons: tuple[int, ...] = LABEL_HORIZONS


def build_features(messages: pl.DataFrame, tick_size: float, config: FeatureConfig = FeatureConfig()) -> pl.DataFrame:
    """Event features, then book features and labels when the messages carry a book."""
    check_feature_input(messages, EVENT_INPUT)
    events = compute_derived_features(messages, tick_size, check_input=False)
    if book_levels(messages.columns) == 0:
        return events
    book = compute_book_features(messages, tick_size, config.book, check_input=False)
    labels = compute_labels(book["mid"], config.label_horizons)
    return pl.concat([events, book, labels], how="horizontal")
