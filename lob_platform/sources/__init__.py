"""Readers per venue (pure logic, no Dagster)."""
