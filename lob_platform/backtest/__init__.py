"""Backtests: signals to positions, execution against the day's book, performance metrics,
perfect foresight and the Avellaneda–Stoikov market maker; pure and vectorised, no Dagster."""
