"""Warehouse tables -> training arrays: rows of a training window and a test day, splits with a
purge gap, targets per label, fixed-length windows that never cross a day. No Dagster."""
