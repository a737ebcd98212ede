"""Feature builders on validated order-book data (pure logic, no Dagster)."""
