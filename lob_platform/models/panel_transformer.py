"""The Jung & Lee (2024) transformer ("Attention-Based Reading, Highlighting, and Forecasting of the
Limit Order Book"): an encoder-decoder that reads every value of the crypto panel over a context
and forecasts one exchange-pair's book values for each of the next steps.

- **Compound embedding** (reading): every panel value has a compound attribute embedding, the sum
  of learned embeddings of its level, side, field (price or volume), exchange and pair. A small
  network maps each compound embedding to the value's projection vector and to its *missing*
  vector. A step's token is the sum over its values of value x projection vector, plus the missing
  vector of every untrusted value (null or stale; its value is then 0), so the model knows which
  values it may not trust. One matrix product per step, whatever the number of values. Sinusoidal
  positions are added to the step tokens.
- **Encoder**: pre-norm self-attention and feed-forward layers over the context's step tokens.
- **Decoder**: one learned query per forecast step (plus its position) attends to itself and to
  the encoder's output; a linear head gives each step's target values as a *change* from the
  target's last context value, so an untrained head forecasts persistence.

Attention is written out with matrix products (no fused kernels), so ``torch.func.vmap`` trains
several of these models as one stacked model (``lob_platform.training.panel``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lob_platform.datasets.panel import FIELDS, SIDES


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.query, self.key, self.value, self.out = (nn.Linear(d_model, d_model) for _ in range(4))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        heads = lambda t: t.reshape(b, t.shape[1], self.n_heads, d // self.n_heads).transpose(1, 2)  # noqa: E731
        q, k, v = heads(self.query(x)), heads(self.key(memory)), heads(self.value(memory))
        weights = self.dropout(torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.n_heads), dim=-1))
        return self.out((weights @ v).transpose(1, 2).reshape(b, n, d))


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, dropout: float):
        super().__init__(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * d_model, d_model))


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attention, self.feed_forward = Attention(d_model, n_heads, dropout), FeedForward(d_model, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.dropout(self.attention(h, h))
        return x + self.dropout(self.feed_forward(self.norm2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.self_attention, self.cross_attention = Attention(d_model, n_heads, dropout), Attention(d_model, n_heads, dropout)
        self.feed_forward = FeedForward(d_model, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.dropout(self.self_attention(h, h))
        x = x + self.dropout(self.cross_attention(self.norm2(x), memory))
        return x + self.dropout(self.feed_forward(self.norm3(x)))


def positions(length: int, d_model: int) -> torch.Tensor:
    """The sinusoidal position encoding of Vaswani et al., (length, d_model)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10_000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : d_model // 2]
    return table


class CompoundEmbedding(nn.Module):
    """Every value of a step with its attributes -> one token per step (module docstring)."""

    def __init__(self, attributes: torch.Tensor, d_model: int):
        super().__init__()
        levels, exchanges, pairs = (int(attributes[:, i].max()) + 1 for i in (0, 3, 4))
        self.register_buffer("attributes", attributes.clone(), persistent=False)
        self.level, self.side, self.field = nn.Embedding(levels, d_model), nn.Embedding(len(SIDES), d_model), nn.Embedding(len(FIELDS), d_model)
        self.exchange, self.pair = nn.Embedding(exchanges, d_model), nn.Embedding(pairs, d_model)
        self.projection = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, 2 * d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
        a = self.attributes
        compound = self.level(a[:, 0]) + self.side(a[:, 1]) + self.field(a[:, 2]) + self.exchange(a[:, 3]) + self.pair(a[:, 4])
        value_weights, missing_weights = self.projection(compound).chunk(2, dim=-1)  # (columns, d) each
        scale = value_weights.shape[0] ** -0.5
        return (x @ value_weights + missing.to(x.dtype) @ missing_weights) * scale + self.bias


class PanelTransformer(nn.Module):
    """Inputs (batch, context, columns) with their missing flags and the targets' last scaled
    values (batch, targets) -> forecasts (batch, horizon, targets), scaled."""

    def __init__(self, attributes: torch.Tensor, n_targets: int, context: int, horizon: int, d_model: int,
                 n_heads: int, encoder_layers: int, decoder_layers: int, dropout: float):
        super().__init__()
        self.embedding = CompoundEmbedding(attributes, d_model)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("context_positions", positions(context, d_model), persistent=False)
        self.register_buffer("horizon_positions", positions(horizon, d_model), persistent=False)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, n_heads, dropout) for _ in range(encoder_layers))
        self.queries = nn.Parameter(torch.randn(horizon, d_model) * 0.02)
        self.decoder = nn.ModuleList(DecoderLayer(d_model, n_heads, dropout) for _ in range(decoder_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_targets)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, missing: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        memory = self.dropout(self.embedding(x, missing) + self.context_positions)
        for layer in self.encoder:
            memory = layer(memory)
        h = (self.queries + self.horizon_positions).expand(x.shape[0], -1, -1)
        for layer in self.decoder:
            h = layer(h, memory)
        return last.unsqueeze(1) + self.head(self.norm(h))
