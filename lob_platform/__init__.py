"""lob_platform: limit-order-book data and ML as Dagster assets.

Seed 000's API: ``from lob_platform import load_messages, validate_messages, ExchangeConfig``.
"""

from lob_platform.sources.loader import load_messages, load_snapshots, validate_messages, validate_snapshots
from lob_platform.sources.venues import ExchangeConfig

__all__ = ["ExchangeConfig", "load_messages", "load_snapshots", "validate_messages", "validate_snapshots"]
