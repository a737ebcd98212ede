"""The Mamba TPP: the pure-PyTorch Mamba block against its step-by-step recurrence and
mamba-ssm's parameter layout, the time likelihood against numerical integration, causality of both
backbones, checkpoints that reload with identical outputs, the generation distances by hand, and
learning: the planted structure of the synthetic market is found, an event stream with none is not."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import polars as pl
import pytest
import torch
from scipy.integrate import quad

from lob_platform import build_features
from lob_platform.datasets.rows import evaluation_rows
from lob_platform.defs.tpp import build_module
from lob_platform.features.training_window import SAME_DAY_SPLIT
from lob_platform.models.mamba import Mamba, _SequentialScan, kernels_available, parallel_selective_scan
from lob_platform.models.specs import TPP_MARKS, ModelSpecs
from lob_platform.models.tpp import INPUT_TOKENS, MambaTPP, cdf, cell_log_prob, log_density, median
from lob_platform.sources.catalog import discover
from lob_platform.sources.synthetic import MarketConfig, generate_market
from lob_platform.tokens.bins import BinEdges, fit_bins
from lob_platform.training import store
from lob_platform.training.tpp import (COMPONENTS, FEATURE_COLUMNS, PoissonMarginal, batch, beats_baseline, event_stream, fit_tpp, score,
                                       scored_windows, summary, time_scaling, vocabulary)
from lob_platform.training.tpp_generation import (Feedback, context_starts, distances, generate, ks_statistic, real_continuations,
                                                  sample_unconditional, total_variation, wasserstein_1d)

TINY = ModelSpecs.tiny().mamba_tpp
MAMBA_SSM_PARAMETERS = {  # mamba_ssm.modules.mamba_simple.Mamba(d_model=16, d_state=4), its state dict
    "A_log": (32, 4), "D": (32,), "in_proj.weight": (64, 16), "conv1d.weight": (32, 1, 4), "conv1d.bias": (32,),
    "x_proj.weight": (9, 32), "dt_proj.weight": (32, 1), "dt_proj.bias": (32,), "out_proj.weight": (16, 32)}


# ---- the Mamba block


def test_the_blocks_forward_equals_its_step_by_step_recurrence():
    torch.manual_seed(0)
    block = Mamba(16, d_state=4).double()
    hidden = torch.randn(3, 37, 16, dtype=torch.float64)
    state = tuple(s.double() for s in block.initial_state(3))
    steps = []
    for t in range(hidden.shape[1]):
        out, state = block.step(hidden[:, t], state)
        steps.append(out)
    assert torch.allclose(block(hidden), torch.stack(steps, 1), atol=1e-12)


def test_both_selective_scans_are_the_recurrence_and_their_gradients_are_its():
    g = torch.Generator().manual_seed(0)
    u, B, C = (torch.randn(2, 37, n, generator=g, dtype=torch.float64) for n in (3, 4, 4))
    delta, A = torch.rand(2, 37, 3, generator=g, dtype=torch.float64), -torch.rand(3, 4, generator=g, dtype=torch.float64)
    h, y = torch.zeros(2, 3, 4, dtype=torch.float64), []
    for t in range(37):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[..., None] * B[:, t, None, :]
        y.append((h * C[:, t, None, :]).sum(-1))
    assert torch.allclose(parallel_selective_scan(u, delta, A, B, C), torch.stack(y, 1), atol=1e-12)  # the CUDA path, here on the CPU
    assert torch.allclose(_SequentialScan.apply(u, delta, A, B, C), torch.stack(y, 1), atol=1e-12)
    small = [x[:, :9].clone().requires_grad_() for x in (u, delta)] + [A.clone().requires_grad_()] + [
        x[:, :9].clone().requires_grad_() for x in (B, C)]
    assert torch.autograd.gradcheck(_SequentialScan.apply, small)
    assert torch.autograd.gradcheck(lambda *args: parallel_selective_scan(*args), small)


def test_parameters_have_mamba_ssm_names_and_shapes():
    block = Mamba(16, d_state=4)
    assert {k: tuple(v.shape) for k, v in block.state_dict().items()} == MAMBA_SSM_PARAMETERS


# ---- the time likelihood


@pytest.mark.parametrize("distribution", ["exponential", "lognormal"])
def test_time_nll_is_the_probability_of_the_clock_cell_by_numerical_integration(distribution):
    torch.manual_seed(1)
    params = torch.randn(4, 9, dtype=torch.float64)

    def integral(i: int, low: float, high: float) -> float:
        density = lambda t: math.exp(log_density(params[i:i + 1], torch.tensor([t], dtype=torch.float64), distribution).item())  # noqa: E731
        if distribution == "exponential":
            return quad(density, low, high, epsabs=0, epsrel=1e-10, limit=200)[0]
        # the log-normal is steep near 0: integrate over log t
        return quad(lambda s: density(math.exp(s)) * math.exp(s), math.log(low) if low > 0 else -200,
                    math.log(high) if high < math.inf else 200, epsabs=0, epsrel=1e-10, limit=400)[0]

    for gap, width in ((0.0, 1e-3), (0.3, 1e-3), (2.0, 0.5), (1e-5, 1e-8)):
        exact = cell_log_prob(params, torch.full((4,), gap), width, distribution).exp().numpy()
        assert np.allclose(exact, [integral(i, gap, gap + width) for i in range(4)], rtol=1e-6), (gap, width)
    assert np.allclose([integral(i, 0, math.inf) for i in range(4)], 1, atol=1e-6)  # a density
    middle = median(params, distribution, 1e-12)
    assert np.allclose(cdf(params, middle, distribution).numpy(), 0.5, atol=1e-9)  # the median halves the mass


def test_the_cell_nll_tends_to_the_density_nll_and_a_zero_gap_costs_a_finite_amount():
    params = torch.tensor([[0.0, 1.0, 0.5, 2.0, 0.0, 0.0]], dtype=torch.float64)
    for width in (1e-6, 1e-9):
        cell = cell_log_prob(params, torch.tensor([0.4]), width, "exponential") - math.log(width)
        assert cell.item() == pytest.approx(log_density(params, torch.tensor([0.4]), "exponential").item(), abs=1e-5)
    zero = cell_log_prob(params, torch.tensor([0.0]), 1e-9, "exponential")
    assert math.isfinite(zero.item()) and zero.item() < 0


# ---- the model


def small_model(backbone: str = "mamba") -> MambaTPP:
    spec = dataclasses.replace(TINY, backbone=backbone, dropout_emb=0.0, dropout_mlp=0.0)
    vocab = vocabulary(fit_bins(pl.DataFrame({"price_change_ticks": [-2.0, -1, 0, 0, 1, 3], "log_size": [1.0, 2, 3, 4, 5, 6],
                                              "log_inter_arrival_s": [-20.7, -3, -2, -1, 0, 1], "level": [0.0, 1, 2, 3, None, 5]})),
                       0.1, 1e-9)
    torch.manual_seed(0)
    return MambaTPP(spec, vocab).eval()


def random_inputs(model: MambaTPP, batch: int = 2, length: int = 20, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.stack([torch.randint(0, model.vocabulary.inputs[name], (batch, length), generator=g) for name in INPUT_TOKENS], -1)
    coarse = torch.randint(0, model.vocabulary.marks["price_coarse"], (batch, length), generator=g)
    return tokens, torch.randn(batch, length, 2, generator=g), coarse


@pytest.mark.parametrize("backbone", ["mamba", "transformer"])
def test_a_position_never_sees_a_later_event(backbone):
    model = small_model(backbone)
    tokens, continuous, coarse = random_inputs(model)
    before = model(tokens, continuous, coarse)
    tokens[:, 12:] = 0
    continuous[:, 12:] = 5.0
    after = model(tokens, continuous, coarse)
    for name in ("time", *TPP_MARKS):
        assert torch.equal(before[name][:, :12], after[name][:, :12])
        assert not torch.equal(before[name][:, 12:], after[name][:, 12:])


@pytest.mark.parametrize("backbone", ["mamba", "transformer"])
def test_a_stored_checkpoint_reloads_with_identical_outputs(tmp_path, backbone):
    model = small_model(backbone)
    manifest = {"family": "mamba_tpp", "label": "next_event", "config": dataclasses.asdict(model.spec),
                "vocabulary": model.vocabulary.as_dict()}
    store.save(tmp_path, manifest, model)
    _, loaded, _ = store.load(tmp_path, {"family": "mamba_tpp"}, build_module)
    inputs = random_inputs(model)
    with torch.no_grad():
        before, after = model(*inputs), loaded(*inputs)
    differences = {name: (before[name] - after[name]).abs().max().item() for name in before}
    assert differences == dict.fromkeys(before, 0.0)


@pytest.mark.skipif(not kernels_available(), reason="needs CUDA and mamba-ssm (the gpu extra); none on this machine")
def test_mamba_ssm_kernels_agree_with_the_pure_path_and_a_checkpoint_moves_to_cuda_and_back():
    pure = small_model("mamba")
    kernels = MambaTPP(pure.spec, pure.vocabulary, use_kernels=True).cuda().eval()
    kernels.load_state_dict(pure.state_dict())  # the same parameter names and shapes
    inputs = random_inputs(pure, length=64)
    with torch.no_grad():
        expected, got = pure(*inputs), kernels(*(x.cuda() for x in inputs))
    worst = max((expected[name] - got[name].cpu()).abs().max().item() for name in expected)
    print(f"largest output difference, mamba-ssm kernels against the pure path: {worst:.2e}")
    assert worst < 1e-3
    back = MambaTPP(pure.spec, pure.vocabulary).eval()
    back.load_state_dict({k: v.cpu() for k, v in kernels.state_dict().items()})
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(pure(*inputs).values(), back(*inputs).values()))


def test_scored_windows_score_every_event_once_with_the_most_context():
    for first, end, length, stride in ((0, 1000, 64, 32), (5, 70, 64, 32), (0, 10, 64, 32), (3, 500, 1, 1)):
        scored = []
        for start, window, first_scored in scored_windows(first, end, length, stride):
            scored += [start + p + 1 for p in range(first_scored, window)]
            assert start == first or first_scored >= window - stride  # context of at least seq_len - stride
        assert scored == list(range(first + 1, end))


# ---- generation distances by hand


def test_distances_by_hand():
    assert ks_statistic(np.array([0.0, 1.0]), np.array([0.5, 2.0])) == pytest.approx(0.5)
    assert wasserstein_1d(np.array([0.0, 1.0]), np.array([1.0, 2.0])) == pytest.approx(1.0)
    assert total_variation(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2) == pytest.approx(0.25)
    assert ks_statistic(np.arange(10.0), np.arange(10.0)) == 0


# ---- the asset check


def test_beats_poisson_baseline_check_passes_and_fails():
    rng = np.random.default_rng(0)
    baseline = rng.normal(6.0, 1.0, 5000)
    assert beats_baseline(baseline - 0.2 + rng.normal(0, 0.1, 5000), baseline)[0]
    assert not beats_baseline(baseline - 0.001 + rng.normal(0, 0.1, 5000), baseline)[0]  # within noise
    assert not beats_baseline(baseline + 0.2, baseline)[0]


# ---- learning


@pytest.fixture(scope="module")
def synthetic_rows(tmp_path_factory) -> pl.DataFrame:
    """One synthetic day (Hawkes arrivals, the order-flow signal), split 60/20/20 in time."""
    root = tmp_path_factory.mktemp("tpp")
    generate_market(root, MarketConfig(n_days=1, mic_products=(), order_feed_products=(), crypto_pairs=(),
                                       lobster_tickers=("ACME",), lobster_levels=5, lobster_events_per_day=12_000))
    (day,) = discover(root)
    return evaluation_rows(build_features(day.read(), 0.01).select(FEATURE_COLUMNS), "2024-03-04", SAME_DAY_SPLIT, 0.6, 1)


def without_structure(rows: pl.DataFrame) -> pl.DataFrame:
    """The same events with nothing beyond their marginals: shuffled within each split, with
    independent exponential gaps."""
    rng = np.random.default_rng(0)
    parts = []
    for (_,), part in rows.group_by(["split"], maintain_order=True):
        gap = np.maximum(np.round(rng.exponential(0.2, part.height) * 1e9), 1).astype(np.int64)
        parts.append(part.sample(fraction=1.0, shuffle=True, seed=int(rng.integers(1 << 30))).with_columns(
            inter_arrival_ns=pl.Series(gap), log_inter_arrival_s=pl.Series(np.log(gap / 1e9))))
    return pl.concat(parts)


def fit_and_score(rows: pl.DataFrame):
    train = rows.filter(pl.col("split") == "train")
    bins, scaling = fit_bins(train, BinEdges()), time_scaling(train)
    stream = event_stream(rows, bins, scaling, 1e-9)
    vocab = vocabulary(bins, scaling["mean_gap_s"], 1e-9)
    model, history = fit_tpp(stream, vocab, TINY, torch.device("cpu"), lambda message: None)
    scores = score(model, stream, "test")
    poisson = PoissonMarginal.fit(stream, vocab)
    return model, stream, bins, scaling, scores, poisson, poisson.score(stream, scores.events), score(model, stream, "test", 1)


def paired(model, baseline, components) -> tuple[float, float]:
    difference = sum(model.nll[c] for c in components) - sum(baseline.nll[c] for c in components)
    return float(difference.mean()), float(difference.std(ddof=1) / np.sqrt(len(difference)))


def test_on_the_synthetic_market_time_and_marks_beat_the_poisson_marginal_baseline_and_generation_beats_unconditional(synthetic_rows):
    model, stream, bins, scaling, scores, poisson, baseline, _ = fit_and_score(synthetic_rows)
    assert np.array_equal(scores.events, np.flatnonzero(stream.split == "test")[1:])  # every test event but the first
    gain, se = paired(scores, baseline, ("time",))
    assert gain < -5 * se  # Hawkes clustering and simultaneous fills: time is predictable
    gain, se = paired(scores, baseline, TPP_MARKS)
    assert gain < -5 * se
    ours, theirs = summary(scores, stream), summary(baseline, stream)
    assert ours["accuracy_price_coarse"] > theirs["accuracy_price_coarse"]
    assert ours["mae_log_inter_arrival"] < theirs["mae_log_inter_arrival"]
    starts = context_starts(stream, "test", TINY.seq_len, TINY.generation_events, TINY.generation_contexts)
    real = real_continuations(stream, starts, TINY.seq_len, TINY.generation_events)
    generated = generate(model, stream, starts, bins, scaling, TINY.generation_events, seed=0)
    assert generated["marks"].shape == real["marks"].shape and (generated["gap_s"] >= 0).all()
    for j, mark in enumerate(TPP_MARKS):
        assert generated["marks"][:, j].max() < model.vocabulary.marks[mark]
    for sample in (generated, sample_unconditional(poisson, len(real["gap_s"]), 0)):  # a fine bin its coarse group has
        coarse, fine = sample["marks"][:, TPP_MARKS.index("price_coarse")], sample["marks"][:, TPP_MARKS.index("price_fine")]
        assert (fine < np.asarray(model.vocabulary.fine_per_coarse)[coarse]).all()
    by_model = distances(generated, real, model.vocabulary)
    by_unconditional = distances(sample_unconditional(poisson, len(real["gap_s"]), 0), real, model.vocabulary)
    assert by_model[("inter_arrival", "ks")] < by_unconditional[("inter_arrival", "ks")]


def test_a_window_predicts_the_next_events_and_generated_events_become_the_inputs_real_ones_are(synthetic_rows):
    train = synthetic_rows.filter(pl.col("split") == "train")
    bins, scaling = fit_bins(train, BinEdges()), time_scaling(train)
    stream = event_stream(synthetic_rows, bins, scaling, 1e-9)
    b = batch(stream, np.array([10, 500]), 64, torch.device("cpu"))
    assert torch.equal(b["marks"][:, :-1], torch.from_numpy(stream.marks[np.array([11, 501])[:, None] + np.arange(63)]))
    assert torch.equal(b["tokens"][:, 1:], torch.from_numpy(stream.tokens[np.array([11, 501])[:, None] + np.arange(63)]))
    assert np.array_equal(b["gap_s"][:, 0].numpy(), stream.gap_s[[11, 501]])  # position t describes event t + 1
    feedback = Feedback(vocabulary(bins, scaling["mean_gap_s"], 1e-9), bins, scaling)
    tokens, continuous = feedback.inputs(torch.from_numpy(stream.gap_s), torch.from_numpy(stream.marks))
    assert torch.equal(tokens, torch.from_numpy(stream.tokens))
    assert torch.allclose(continuous, torch.from_numpy(stream.continuous), atol=1e-5)


def test_with_nothing_beyond_the_marginals_it_ends_within_noise_of_the_baseline(synthetic_rows):
    _, stream, _, _, scores, _, baseline, _ = fit_and_score(without_structure(synthetic_rows))
    gain, se = paired(scores, baseline, COMPONENTS)
    reference = float(sum(baseline.nll[c] for c in COMPONENTS).mean())
    assert gain > -2 * se  # no gain a structureless stream cannot give
    assert gain < 0.01 * abs(reference)  # and it learnt the marginals (within 1% of the baseline's NLL)
