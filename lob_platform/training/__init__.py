"""Training loops, early stopping, the hyperparameter search, metrics and baselines, and the model
store with its manifests. No Dagster: the wiring passes a ``log`` callable for progress."""
