"""Training throughput and peak memory of each model family, through the platform's training layer
and, as the baseline in the same run, the same estimator fit directly on ready-made arrays.

Data: a synthetic three-day training window (the built-in market, ACME, 20,000 events a day),
features built once, untimed. Per family and configuration (``tiny``: CI and the main job;
``full``: the seeds' values) one label is trained, ``next_mid_up``, with a search budget of one
trial, so one fit is timed:

- platform: ``training.fit.train_family`` from the rows of the window (targets, purge gaps,
  feature matrix, scaling, the fit, validation metrics);
- baseline: the family's estimator built from the same spec, fit on the same training arrays
  prepared outside the timing (the LSTM: the same loop over a windows tensor built beforehand).

Each measurement runs in a fresh process, so its peak resident memory (ru_maxrss, after loading
the data) is its own. Throughput is training rows per second (the LSTM: training windows x epochs
per second). On CUDA, when there is one, the LSTM is also measured there.

The Mamba TPP (``mamba_tpp``): training tokens per second (optimiser steps x batch x seq_len,
through ``training.tpp.fit_tpp``, its final validation pass included) and peak memory, for each
backbone of the same width, depth and sequence length: the Mamba blocks on the pure-PyTorch path
(the CPU's loop over time), the same with the parallel scan the pure path uses on CUDA (tiny
only), and the Transformer; on CUDA also mamba-ssm's kernels where installed, all with bf16. A few steps at the
seeds' size (``full``), more at ``tiny``.

    python benchmarks/train.py [--sizes tiny,full] [--families lightgbm,...,mamba_tpp]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from features import machine  # noqa: E402

from lob_platform.datasets.rows import purge_gap, training_rows  # noqa: E402
from lob_platform.datasets.targets import make_target  # noqa: E402
from lob_platform.datasets.windows import window_ends  # noqa: E402
from lob_platform.models.specs import EVENT_FAMILIES, FAMILIES, LSTMSpec, ModelSpecs, SearchSpec  # noqa: E402

LABEL = "next_mid_up"
TPP_STEPS = {"tiny": 40, "full": 3}
TPP_VARIANTS = {"cpu": ("mamba", "mamba_parallel_scan", "transformer"),
                "cuda": ("mamba_kernels", "mamba", "transformer")}


def specs_of(size: str, family: str) -> ModelSpecs:
    specs = ModelSpecs.tiny() if size == "tiny" else ModelSpecs()
    spec = specs.of(family)
    if hasattr(spec, "search"):
        spec = replace(spec, search=SearchSpec(n_trials=1))
    return specs.with_family(family, spec)


def make_data(folder: Path) -> None:
    from lob_platform.features.table import build_features
    from lob_platform.sources.catalog import discover
    from lob_platform.sources.synthetic import MarketConfig, generate_market

    generate_market(folder / "data", MarketConfig(n_days=4, lobster_tickers=("ACME",), mic_products=(), order_feed_products=(), crypto_pairs=()))
    for day in discover(folder / "data"):
        build_features(day.read(), 0.01).write_parquet(folder / f"{day.date}.parquet")


def load_rows(folder: Path, specs: ModelSpecs) -> pl.DataFrame:
    days = {p.stem: pl.read_parquet(p) for p in sorted(folder.glob("*.parquet"))}
    window = dict(list(days.items())[:3])
    return training_rows(window, None, list(days)[3], "previous_days", 0.6, specs.validation_fraction,
                         purge_gap((LABEL,)))


def peak_mb(before: int) -> float:
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def measure(folder: Path, family: str, size: str, how: str, device: str) -> dict:
    """One measurement, in this process."""
    from lob_platform.training.fit import feature_list, scaled, train_family

    specs = specs_of(size, family)
    rows = load_rows(folder, specs)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    spec = specs.of(family)
    if how == "platform":
        if device == "cpu":
            import torch

            torch.cuda.is_available = lambda: False  # the platform picks CUDA when there is one
        started = time.perf_counter()
        trained = train_family(family, specs, rows, "benchmark", lambda message: None, labels=(LABEL,))[0][0]
        seconds = time.perf_counter() - started
        units = trained.manifest.get("training_windows", trained.manifest["train_rows"])
        units *= len(trained.history) if isinstance(spec, LSTMSpec) else 1
        return {"seconds": seconds, "units": units, "peak_mb": peak_mb(before)}
    # the baseline: arrays ready before the clock starts
    features = feature_list(family, specs, rows.columns)
    matrix = rows.select(pl.col(c).cast(pl.Float64) for c in features).to_numpy()
    target = make_target(rows, LABEL, specs.labels)
    split = rows["split"].cast(pl.String).to_numpy()
    train = np.flatnonzero((split == "train") & (target.y >= 0))
    if specs.max_train_rows:
        train = train[-specs.max_train_rows:]
    if not isinstance(spec, LSTMSpec):
        from lob_platform.models.tabular import make_estimator, spec_params

        x, y = matrix[train], target.y[train]
        started = time.perf_counter()
        make_estimator(spec, spec_params(spec)).fit(x, y)
        return {"seconds": time.perf_counter() - started, "units": len(train), "peak_mb": peak_mb(before)}
    import torch
    from torch import nn

    from lob_platform.datasets.windows import gather
    from lob_platform.models.lstm import LSTMClassifier

    inputs = scaled(matrix, {"mean": np.nanmean(matrix[train], axis=0).tolist(),
                             "std": np.nanstd(matrix[train], axis=0).tolist()})
    ends = train[window_ends(rows["date"].to_numpy(), spec.window)[train]][::spec.train_stride]
    where = torch.device(device)
    windows = torch.from_numpy(gather(inputs, ends, spec.window)).to(where)
    labels = torch.from_numpy(target.y[ends]).to(where)
    torch.manual_seed(spec.seed)
    model = LSTMClassifier(inputs.shape[1], spec).to(where)
    optimiser = torch.optim.Adam(model.parameters(), lr=spec.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    epochs = spec.epochs
    started = time.perf_counter()
    for _ in range(epochs):
        for start in range(0, len(ends), spec.batch_size):
            optimiser.zero_grad()
            loss_fn(model(windows[start:start + spec.batch_size]), labels[start:start + spec.batch_size]).backward()
            optimiser.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - started, "units": len(ends) * epochs, "peak_mb": peak_mb(before)}


def measure_tpp(folder: Path, size: str, variant: str, device: str) -> dict:
    """One TPP measurement, in this process: ``variant`` is the backbone and, for Mamba, the path."""
    import torch

    from lob_platform.models import mamba
    from lob_platform.tokens.bins import BinEdges, fit_bins
    from lob_platform.training import tpp

    specs = ModelSpecs.tiny() if size == "tiny" else ModelSpecs()
    steps = TPP_STEPS[size]
    spec = replace(specs.mamba_tpp, steps=steps, validation_every=steps, warmup_steps=1,
                   backbone="transformer" if variant == "transformer" else "mamba")
    rows = load_rows(folder, specs).select(*tpp.FEATURE_COLUMNS, "date", "split")
    train = rows.filter(pl.col("split") == "train")
    bins, scaling = fit_bins(train, BinEdges()), tpp.time_scaling(train)
    stream = tpp.event_stream(rows, bins, scaling, 1e-9)
    vocab = tpp.vocabulary(bins, scaling["mean_gap_s"], 1e-9)
    if variant == "mamba_parallel_scan":  # the CUDA pure path's form, on the CPU
        mamba.selective_scan = lambda u, delta, A, B, C, D: mamba.parallel_selective_scan(u, delta, A, B, C) + u * D
    if variant == "mamba" and device == "cuda":
        tpp.kernels_available = lambda: False  # the pure path on CUDA
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    model, _ = tpp.fit_tpp(stream, vocab, spec, torch.device(device), lambda message: None)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda" else peak_mb(before)
    kernels = tpp.uses_kernels(spec, torch.device(device))
    return {"seconds": seconds, "units": steps * spec.batch_size * spec.grad_accumulation * spec.seq_len,
            "peak_mb": peak, "kernels": kernels}


def in_subprocess(folder: Path, family: str, size: str, how: str, device: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", str(folder), family, size, how, device],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="tiny,full")
    parser.add_argument("--families", default=",".join(FAMILIES + EVENT_FAMILIES))
    parser.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        folder, family, size, how, device = args.one
        measured = measure_tpp(Path(folder), size, how, device) if family in EVENT_FAMILIES else measure(
            Path(folder), family, size, how, device)
        print(json.dumps(measured))
        return
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"machine: {machine()}, torch {torch.__version__}, "
          + (f"CUDA: {torch.cuda.get_device_name(0)}" if "cuda" in devices else "no CUDA device (CPU only)"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        make_data(folder)
        print(f"data: 3 training days of ACME, 20,000 events each ({time.perf_counter() - started:.0f}s to build), label {LABEL}")
        print(f"{'family':<20}{'size':<6}{'device':<7}{'platform /s':>13}{'baseline /s':>13}{'ratio':>7}"
              f"{'platform MB':>13}{'baseline MB':>13}")
        families = args.families.split(",")
        for size in args.sizes.split(","):
            for family in (f for f in families if f not in EVENT_FAMILIES):
                for device in devices if family == "lstm" else ["cpu"]:
                    ours = in_subprocess(folder, family, size, "platform", device)
                    base = in_subprocess(folder, family, size, "baseline", device)
                    rate, base_rate = ours["units"] / ours["seconds"], base["units"] / base["seconds"]
                    print(f"{family:<20}{size:<6}{device:<7}{rate:>13,.0f}{base_rate:>13,.0f}{rate / base_rate:>7.2f}"
                          f"{ours['peak_mb']:>13,.0f}{base['peak_mb']:>13,.0f}", flush=True)
        print("units: training rows per second (LSTM: training windows x epochs per second, validation included on the "
              "platform side); ratio = platform / baseline; MB = how far the measurement raised the process's peak "
              "resident memory above the peak of loading the window (0: not above it)")
        if "mamba_tpp" in families:
            print(f"\nMamba TPP: training tokens per second (steps x batch x seq_len; {TPP_STEPS} steps, one validation "
                  "pass included); ratio = this variant / the first row of its size and device; MB: the CPU's peak "
                  "resident memory above loading, or CUDA's peak allocated")
            print(f"{'variant':<22}{'size':<6}{'device':<7}{'tokens/s':>12}{'ratio':>8}{'peak MB':>10}")
            for size in args.sizes.split(","):
                for device in devices:
                    first = None
                    for variant in TPP_VARIANTS[device]:
                        if variant == "mamba_parallel_scan" and size != "tiny":
                            continue  # L log L work on materialised tensors: minutes per step at the seeds' size
                        try:
                            result = in_subprocess(folder, "mamba_tpp", size, variant, device)
                        except subprocess.CalledProcessError as failure:
                            reason = (failure.stderr.strip().splitlines() or [f"exit status {failure.returncode}"])[-1]
                            print(f"{variant:<22}{size:<6}{device:<7}  failed: {reason}")
                            continue
                        rate = result["units"] / result["seconds"]
                        first = first or rate
                        note = "" if variant != "mamba_kernels" or result["kernels"] else "  (mamba-ssm not installed: pure path)"
                        print(f"{variant:<22}{size:<6}{device:<7}{rate:>12,.0f}{rate / first:>8.2f}{result['peak_mb']:>10,.0f}{note}",
                              flush=True)


if __name__ == "__main__":
    main()
