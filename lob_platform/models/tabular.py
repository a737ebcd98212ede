"""The book-feature classifiers: LightGBM, logistic regression and random forest, each built from
its spec's values, and the search space Optuna draws from. No fitting here (``training.tabular``).

Missing values (null features, e.g. no mid yet): LightGBM handles them natively; logistic
regression and random forest get the training rows' median (scikit-learn's SimpleImputer, fit
with the model on training rows only), logistic regression then standard scaling (likewise).
"""

from __future__ import annotations

import os
from dataclasses import asdict

import optuna

from lob_platform.models.specs import LightGBMSpec, LogisticRegressionSpec, RandomForestSpec

THREADS_VARIABLE = "LOB_TRAIN_THREADS"


def threads() -> int:
    """Threads a random forest may use (its trees, hence its model, do not depend on it):
    ``$LOB_TRAIN_THREADS``, else every core. The main job sets 1 in each of its workers, which
    already keep both cores busy: more threads than cores make OpenMP's spin-waits cost several
    times the work."""
    return int(os.environ.get(THREADS_VARIABLE) or os.cpu_count() or 1)


def spec_params(spec) -> dict:
    """The spec's tunable values (search settings and seed left out)."""
    return {k: v for k, v in asdict(spec).items() if k not in ("search", "seed")}


def suggest(trial: optuna.Trial, spec) -> dict:
    """One draw from the family's declared search space."""
    if isinstance(spec, LightGBMSpec):
        return {"n_estimators": trial.suggest_int("n_estimators", 30, 300, log=True),
                "max_depth": trial.suggest_int("max_depth", 3, 10),
                "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
                "num_leaves": trial.suggest_int("num_leaves", 7, 63, log=True),
                "min_child_samples": trial.suggest_int("min_child_samples", 10, 200, log=True),
                "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0)}
    if isinstance(spec, LogisticRegressionSpec):
        return {"C": trial.suggest_float("C", 1e-4, 10.0, log=True), "max_iter": spec.max_iter}
    if isinstance(spec, RandomForestSpec):
        return {"n_estimators": trial.suggest_int("n_estimators", 16, 128, log=True),
                "max_depth": trial.suggest_int("max_depth", 3, 12),
                "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 200, log=True),
                "max_features": trial.suggest_float("max_features", 0.1, 0.7), "max_samples": spec.max_samples}
    raise TypeError(f"no search space for {type(spec).__name__}")


def make_estimator(spec, params: dict):
    """An unfitted estimator of the spec's family with ``params``."""
    if isinstance(spec, LightGBMSpec):
        from lightgbm import LGBMClassifier

        # one thread: LightGBM's histograms sum in a thread-dependent order, so the same seed gives the
        # same model bytes only with the same thread count, whichever worker or machine trains it
        return LGBMClassifier(**params, random_state=spec.seed, n_jobs=1, deterministic=True,
                              force_row_wise=True, verbose=-1)
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    if isinstance(spec, LogisticRegressionSpec):
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                             LogisticRegression(**params, random_state=spec.seed))
    if isinstance(spec, RandomForestSpec):
        from sklearn.ensemble import RandomForestClassifier

        return make_pipeline(SimpleImputer(strategy="median"),
                             RandomForestClassifier(**params, random_state=spec.seed, n_jobs=threads()))
    raise TypeError(f"not a tabular spec: {type(spec).__name__}")


def deterministic_predictions(estimator):
    """The fitted estimator set to predict in one thread: a random forest's parallel prediction
    adds the trees' probabilities in whatever order the threads finish, so the last bits vary."""
    if "randomforestclassifier" in getattr(estimator, "named_steps", {}):
        estimator.set_params(randomforestclassifier__n_jobs=1)
    return estimator


def preprocessing(estimator) -> dict:
    """The fitted imputer medians and scaler parameters (for the manifest); none for LightGBM."""
    steps = getattr(estimator, "named_steps", {})
    out = {}
    if "simpleimputer" in steps:
        out["imputer_median"] = steps["simpleimputer"].statistics_.tolist()
    if "standardscaler" in steps:
        out["scaler_mean"] = steps["standardscaler"].mean_.tolist()
        out["scaler_scale"] = steps["standardscaler"].scale_.tolist()
    return out
