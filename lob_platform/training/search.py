"""Fitting a tabular family with Optuna's search: ``n_trials`` trials from the family's declared
space (``models.tabular.suggest``), the first being the spec's own values, each fit on the
training rows and scored by log-loss on the validation rows only. Every trial is recorded; the
best trial's fitted model is the result (it never saw a validation row while fitting)."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import optuna
from sklearn.metrics import log_loss

from lob_platform.models.tabular import deterministic_predictions, make_estimator, spec_params, suggest

optuna.logging.set_verbosity(optuna.logging.WARNING)


def search(spec, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, n_classes: int,
           log: Callable[[str], None]) -> tuple[object, dict, list[dict]]:
    """(best fitted estimator, its parameters, every trial as a dict)."""
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=spec.search.seed))
    defaults = spec_params(spec)
    fitted, trials = {}, []
    labels = list(range(n_classes))

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, spec)
        started = time.perf_counter()
        estimator = deterministic_predictions(make_estimator(spec, params).fit(x_train, y_train))
        proba = estimator.predict_proba(x_val)
        loss = float(log_loss(y_val, proba, labels=labels))
        accuracy = float(np.mean(proba.argmax(axis=1) == y_val))
        seconds = time.perf_counter() - started
        fitted[trial.number] = estimator
        trials.append({"trial": trial.number, "params": params, "validation_log_loss": loss,
                       "validation_accuracy": accuracy})  # no timings: a rerun writes the same manifest
        log(f"trial {trial.number + 1}/{spec.search.n_trials}: validation log-loss {loss:.4f}, accuracy {accuracy:.4f}, "
            f"{len(y_train) / seconds:,.0f} training rows/s")
        return loss

    study.enqueue_trial({name: defaults[name] for name in _space_names(spec)})
    study.optimize(objective, n_trials=spec.search.n_trials)
    best = study.best_trial.number
    return fitted[best], trials[best]["params"], trials


def _space_names(spec) -> list[str]:
    """Names of the parameters the search space draws (the rest are fixed by the spec)."""
    names = []

    class Recorder:
        def __getattr__(self, method):
            def draw(name, low, *args, **kwargs):
                names.append(name)
                return low
            return draw

    suggest(Recorder(), spec)
    return names
