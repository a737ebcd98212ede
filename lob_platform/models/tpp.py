"""The Mamba temporal point process of the LOB Mamba project: what comes next in the event stream,
when and what.

    event tokens + time features (batch, L) -> embeddings (summed) -> backbone -> shared MLP ->
        time head: the next event's inter-arrival as a mixture of K exponentials (or log-normals)
        mark heads: price change coarse group, then its fine bin given the coarse group; size bin;
                    event type; side; level bin

Backbone: ``n_layers`` Mamba blocks (pre-norm, residual; ``lob_platform.models.mamba``), or a
causal pre-norm Transformer encoder of the same width and depth (``backbone="transformer"``).

**Time likelihood.** Timestamps have a resolution (the venue's clock: a nanosecond on LOBSTER), and many
events share a timestamp (one incoming order filling several resting ones), so the likelihood of
an inter-arrival tau is the exact probability of the clock cell it was recorded in,
P(tau <= T < tau + delta) = F(tau + delta) - F(tau) (delta: one clock tick), reported as a density on the seconds scale:
NLL_time = -log(P / delta). For tau >> delta it is -log f(tau); a zero gap costs a finite amount.
The heads work in units of the training window's mean gap (``time_scale``); the probability of a
cell does not depend on the unit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lob_platform.models.mamba import make_mixer
from lob_platform.models.specs import TPP_MARKS, MambaTPPSpec
from lob_platform.tokens.bins import coarse_groups

INPUT_TOKENS = ("price_change_ticks_coarse", "price_change_ticks_bin", "log_size_bin", "event_type_token", "side_token",
                "level_bin", "log_inter_arrival_s_bin")
"""Token columns embedded per event (``lob_platform.tokens.bins``)."""
MARK_TOKENS = dict(zip(TPP_MARKS, ("price_change_ticks_coarse", "price_change_ticks_fine", "log_size_bin", "event_type_token",
                                    "side_token", "level_bin")))
"""Each predicted mark and the token column it is."""
CONTINUOUS = 2  # standardised log inter-arrival, and 1 where the gap is 0 (a shared timestamp, or a day's first event)


@dataclass(frozen=True)
class Vocabulary:
    """Token counts per input column and mark, the fine bins of each coarse price group, the time
    unit and the venue's clock tick: what the module is built from, recorded in the manifest."""

    inputs: dict[str, int]
    marks: dict[str, int]
    fine_per_coarse: tuple[int, ...]
    time_scale: float  # the training window's mean inter-arrival, seconds
    clock_s: float  # the venue's timestamp resolution, seconds: the cell of the time likelihood

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Vocabulary":
        return cls(dict(values["inputs"]), dict(values["marks"]), tuple(values["fine_per_coarse"]), float(values["time_scale"]),
                   float(values["clock_s"]))

    def first_bins(self) -> np.ndarray:
        """The price bin of each coarse group's first fine bin (bin = first_bins[coarse] + fine)."""
        return np.r_[0, np.cumsum(self.fine_per_coarse)[:-1]]


# ---- the time distributions


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate at both ends; each branch gets inputs it is finite on,
    so the unused one cannot put NaN into the gradient."""
    x = x.clamp(max=-1e-300)
    near = x > -math.log(2)
    return torch.where(near, torch.log(-torch.expm1(torch.where(near, x, -1.0))),
                       torch.log1p(-torch.exp(torch.where(near, -1.0, x))))


def _log_normal_cdf_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(Phi(b) - Phi(a)) for a < b, from the tail where it is accurate."""
    upper = a > 0  # both in the upper tail: Phi(b) - Phi(a) = Phi(-a) - Phi(-b)
    hi = torch.where(upper, -a, b)
    lo = torch.where(upper, -b, a)
    log_hi = torch.special.log_ndtr(hi)
    return log_hi + _log1mexp(torch.special.log_ndtr(lo) - log_hi)


def _mixture(params: torch.Tensor, gap: torch.Tensor):
    """(log weights, first, second, gap) in float64, each (..., K) (module docstring of the layout)."""
    logits, first, second = params.double().chunk(3, dim=-1)
    return torch.log_softmax(logits, dim=-1), first, second, gap.double().unsqueeze(-1)


def cell_log_prob(params: torch.Tensor, gap: torch.Tensor, width: float, distribution: str) -> torch.Tensor:
    """log P(gap <= T < gap + width) under the mixture ``params`` (..., 3K) in float64; ``gap`` and
    ``width`` in the heads' unit. Exponential: [weight logits, log rates, unused]; log-normal:
    [weight logits, means of log T, log standard deviations]."""
    log_weight, first, second, gap = _mixture(params, gap)
    if distribution == "exponential":
        rate = torch.exp(first)
        log_cell = -rate * gap + _log1mexp(-rate * width)
    else:
        sigma = torch.exp(second)
        b = (torch.log(gap + width) - first) / sigma
        a = torch.where(gap > 0, (torch.log(gap.clamp(min=width)) - first) / sigma, torch.full_like(b, -math.inf))
        a = torch.minimum(a, b - 1e-12)
        log_cell = torch.where(gap > 0, _log_normal_cdf_difference(a.clamp(min=-1e4), b), torch.special.log_ndtr(b))
    return torch.logsumexp(log_weight + log_cell, dim=-1)


def log_density(params: torch.Tensor, gap: torch.Tensor, distribution: str) -> torch.Tensor:
    """log f(gap), the mixture's density (what the cell probabilities are tested against)."""
    log_weight, first, second, gap = _mixture(params, gap)
    if distribution == "exponential":
        log_f = first - torch.exp(first) * gap
    else:
        sigma = torch.exp(second)
        z = (torch.log(gap) - first) / sigma
        log_f = -0.5 * z ** 2 - torch.log(sigma * gap) - 0.5 * math.log(2 * math.pi)
    return torch.logsumexp(log_weight + log_f, dim=-1)


def cdf(params: torch.Tensor, gap: torch.Tensor, distribution: str) -> torch.Tensor:
    log_weight, first, second, gap = _mixture(params, gap)
    weight = torch.exp(log_weight)
    if distribution == "exponential":
        return (weight * -torch.expm1(-torch.exp(first) * gap)).sum(-1)
    z = (torch.log(gap.clamp(min=1e-300)) - first) / torch.exp(second)
    return (weight * torch.special.ndtr(z)).sum(-1)


def median(params: torch.Tensor, distribution: str, floor: float) -> torch.Tensor:
    """The mixture's median (bisection in log space), at least ``floor``: the best guess of a gap
    under absolute error, and of its logarithm."""
    low = torch.full(params.shape[:-1], math.log(floor), dtype=torch.float64, device=params.device)
    high = torch.full_like(low, math.log(1e6))
    if bool((cdf(params, torch.exp(low), distribution) >= 0.5).all()):
        return torch.exp(low)
    for _ in range(60):
        middle = (low + high) / 2
        above = cdf(params, torch.exp(middle), distribution) >= 0.5
        high, low = torch.where(above, middle, high), torch.where(above, low, middle)
    below_floor = cdf(params, torch.full_like(low, floor), distribution) >= 0.5
    return torch.where(below_floor, torch.full_like(low, floor), torch.exp(high))


def sample_gap(params: torch.Tensor, distribution: str, generator: torch.Generator) -> torch.Tensor:
    """One draw per row of ``params`` (rows, 3K), in the heads' unit."""
    params = params.double()
    logits, first, second = params.chunk(3, dim=-1)
    component = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)
    rows = torch.arange(len(params))
    if distribution == "exponential":
        uniform = torch.rand(len(params), generator=generator, dtype=torch.float64)
        return -torch.log1p(-uniform) / torch.exp(first[rows, component])
    normal = torch.randn(len(params), generator=generator, dtype=torch.float64)
    return torch.exp(first[rows, component] + torch.exp(second[rows, component]) * normal)


# ---- the model


class MambaBlock(nn.Module):
    """Pre-norm residual block around a Mamba mixer (pure or mamba-ssm's: the same parameters)."""

    def __init__(self, spec: MambaTPPSpec, use_kernels: bool):
        super().__init__()
        self.norm = nn.LayerNorm(spec.d_model)
        self.mixer = make_mixer(spec.d_model, spec.d_state, spec.d_conv, spec.expand, use_kernels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.mixer(self.norm(hidden))

    def step(self, hidden: torch.Tensor, state):
        """One token through the pure module (stored models always load into it)."""
        out, state = self.mixer.step(self.norm(hidden), state)
        return hidden + out, state


class MambaTPP(nn.Module):
    """The TPP (module docstring). ``forward`` gives the heads' outputs at every position: position
    t describes event t + 1."""

    def __init__(self, spec: MambaTPPSpec, vocabulary: Vocabulary, use_kernels: bool = False):
        super().__init__()
        self.spec, self.vocabulary = spec, vocabulary
        d = spec.d_model
        self.embeddings = nn.ModuleDict({name: nn.Embedding(size, d) for name, size in vocabulary.inputs.items()})
        self.continuous = nn.Linear(CONTINUOUS, d)
        self.embedding_dropout = nn.Dropout(spec.dropout_emb)
        if spec.backbone == "mamba":
            self.layers = nn.ModuleList(MambaBlock(spec, use_kernels) for _ in range(spec.n_layers))
        else:
            self.positions = nn.Embedding(spec.seq_len, d)
            layer = nn.TransformerEncoderLayer(d, spec.n_heads, 4 * d, dropout=0.0, activation="gelu", batch_first=True,
                                               norm_first=True)
            self.layers = nn.TransformerEncoder(layer, spec.n_layers, enable_nested_tensor=False)
        self.norm_f = nn.LayerNorm(d)
        self.trunk = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(spec.dropout_mlp))
        self.time_head = nn.Linear(d, 3 * spec.time_components)
        self.mark_heads = nn.ModuleDict({name: nn.Linear(d, size) for name, size in vocabulary.marks.items()})
        self.coarse_to_fine = nn.Embedding(vocabulary.marks["price_coarse"], d)
        fine = torch.arange(vocabulary.marks["price_fine"])[None, :] < torch.tensor(vocabulary.fine_per_coarse)[:, None]
        self.register_buffer("fine_allowed", fine, persistent=False)  # (coarse, fine): which fine bins a group has
        with torch.no_grad():  # start near the training window's rate: rates spread around 1 / mean gap
            self.time_head.bias[spec.time_components:2 * spec.time_components] = torch.linspace(-2, 2, spec.time_components)

    def embed(self, tokens: torch.Tensor, continuous: torch.Tensor) -> torch.Tensor:
        """tokens (batch, L, len(INPUT_TOKENS)) int64, continuous (batch, L, 2) -> (batch, L, d_model)."""
        hidden = self.continuous(continuous)
        for i, name in enumerate(INPUT_TOKENS):
            hidden = hidden + self.embeddings[name](tokens[..., i])
        return self.embedding_dropout(hidden)

    def encode(self, tokens: torch.Tensor, continuous: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(tokens, continuous)
        if self.spec.backbone == "mamba":
            for layer in self.layers:
                hidden = layer(hidden)
        else:
            length = hidden.shape[1]
            hidden = hidden + self.positions(torch.arange(length, device=hidden.device))
            mask = nn.Transformer.generate_square_subsequent_mask(length, device=hidden.device)
            hidden = self.layers(hidden, mask=mask, is_causal=True)
        return self.trunk(self.norm_f(hidden))

    def heads(self, features: torch.Tensor, coarse: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Time parameters and mark logits from the trunk's ``features``; the fine price logits are
        conditioned on ``coarse`` (the true group in training, a sampled one in generation)."""
        out = {"time": self.time_head(features).float()}
        out.update({name: head(features).float() for name, head in self.mark_heads.items() if name != "price_fine"})
        if coarse is not None:
            fine = self.mark_heads["price_fine"](features + self.coarse_to_fine(coarse)).float()
            out["price_fine"] = fine.masked_fill(~self.fine_allowed[coarse], -1e9)
        return out

    def forward(self, tokens: torch.Tensor, continuous: torch.Tensor, next_coarse: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.encode(tokens, continuous), next_coarse)

    def losses(self, out: dict[str, torch.Tensor], gap_s: torch.Tensor, marks: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-event negative log-likelihoods (batch, L): ``time`` (nats, density per second) and one
        cross-entropy per mark; ``marks`` (batch, L, len(TPP_MARKS)), ``gap_s`` the next gaps in seconds."""
        scale = self.vocabulary.time_scale
        clock = self.vocabulary.clock_s
        log_cell = cell_log_prob(out["time"], gap_s / scale, clock / scale, self.spec.time_distribution)
        result = {"time": -(log_cell - math.log(clock)).float()}
        for i, name in enumerate(TPP_MARKS):
            logits = out[name]
            result[name] = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), marks[..., i].reshape(-1),
                                           reduction="none").view(marks.shape[:-1])
        return result

    def objective(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss: time_weight x NLL_time + mark_weight x sum of the marks' CE, averaged."""
        marks = sum(losses[name] for name in TPP_MARKS)
        return (self.spec.time_weight * losses["time"] + self.spec.mark_weight * marks).mean()

    # ---- one event at a time (generation)

    def initial_state(self, batch: int, device) -> list:
        return [layer.mixer.initial_state(batch, device) for layer in self.layers] if self.spec.backbone == "mamba" else []

    def step(self, tokens: torch.Tensor, continuous: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        """One event per row: tokens (batch, len(INPUT_TOKENS)), continuous (batch, 2) -> the trunk's
        features for the next event (batch, d_model) and the new state (Mamba backbone only)."""
        hidden = self.embed(tokens, continuous)
        new_state = []
        for layer, layer_state in zip(self.layers, state):
            hidden, layer_state = layer.step(hidden, layer_state)
            new_state.append(layer_state)
        return self.trunk(self.norm_f(hidden)), new_state


def fine_per_coarse(bins: int, n_coarse: int) -> tuple[int, ...]:
    """Fine bins in each coarse price group (``tokens.bins``: contiguous groups; the null token is a
    group of one)."""
    return (*np.bincount(coarse_groups(bins, min(n_coarse, bins))).tolist(), 1)
