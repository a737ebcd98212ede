"""What every layer shares: unified columns, table kinds, splits and settings (pure logic, no Dagster)."""
