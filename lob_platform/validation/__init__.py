"""Validation rules, pandera schemas and the quarantine split (pure logic, no Dagster)."""
