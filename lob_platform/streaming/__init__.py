"""The streaming path (seed 001): a validated day replayed into Redis Streams, features kept
online equal to the batch ones, a stored model served live, predictions sunk to parquet exactly
once, and their evaluation. Runs in its own processes (``lob stream replay | serve | sink | run``);
the Dagster side is ``lob_platform.defs.streaming``."""
