"""The code location (workspace.yaml and ``dagster ... -m lob_platform.definitions`` load it):
the built-in venues and those declared in the data folder's venues.toml, read when Dagster
loads the location, not when this module is imported."""

import dagster as dg

from lob_platform.defs import build_definitions
from lob_platform.sources.registry import load_venues


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_venues())
