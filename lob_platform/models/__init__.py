"""Model definitions only (torch, LightGBM, scikit-learn): no I/O, no training loop, no Dagster."""
