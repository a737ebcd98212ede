"""lob_platform: limit-order-book data and ML as Dagster assets.

Seed 000's API: ``from lob_platform import load_messages, validate_messages, compute_derived_features,
fit_bins, compute_token_bins, BinEdges, ExchangeConfig``.
"""

from lob_platform.features.book import BookFeatureConfig, compute_book_features
from lob_platform.features.crypto_panel import PanelConfig, build_panel
from lob_platform.features.events import compute_derived_features
from lob_platform.features.labels import compute_labels, fit_label_thresholds, ternary_labels
from lob_platform.features.order_book import rebuild_book
from lob_platform.features.table import FeatureConfig, build_features
from lob_platform.sources.loader import load_messages, load_snapshots, validate_messages, validate_snapshots
from lob_platform.sources.venues import ExchangeConfig
from lob_platform.tokens.bins import BinEdges, compute_token_bins, fit_bins
from lob_platform.core.splits import chronological_split
from lob_platform.tokens.sequences import token_sequences

__all__ = [
    "BinEdges", "BookFeatureConfig", "ExchangeConfig", "FeatureConfig", "PanelConfig", "build_features", "build_panel",
    "chronological_split", "compute_book_features", "compute_derived_features", "compute_labels", "compute_token_bins",
    "fit_bins", "fit_label_thresholds", "load_messages", "load_snapshots", "rebuild_book", "ternary_labels", "token_sequences",
    "validate_messages", "validate_snapshots",
]
