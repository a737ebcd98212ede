"""The SSM-HiPPO forecaster: state-space layers initialised from the HiPPO-LegS matrix, over
patches of each channel, with attention across channels.

- **Patches**: each channel's lookback is cut into patches of ``patch_len`` steps every
  ``patch_stride`` (PatchTST); a patch (its values and missing flags) is embedded linearly, with a
  learned position and a learned channel embedding.
- **SSM layers** (per channel, over its patch sequence): ``d_model`` single-input state-space
  models x' = A x + B u, y = C x + D u with state size ``d_state``. A and B start from the HiPPO-LegS
  matrices (Gu et al., 2020): A[n, k] = -sqrt(2n+1) sqrt(2k+1) for n > k, -(n+1) on the diagonal,
  0 above; B[n] = sqrt(2n+1); they stay trainable. Each model has its own step size (log-uniform
  in [0.001, 0.1] at start) and is discretised with the bilinear transform:
  A_d = (I - dt/2 A)^-1 (I + dt/2 A), B_d = (I - dt/2 A)^-1 dt B. The layer applies the causal
  convolution with the kernel C A_d^l B_d (l = 0 .. patches - 1), then GELU, a linear map and a
  residual connection, pre-norm.
- **Channel attention**: each channel's patch states are flattened to one token; multi-head
  self-attention across the channels lets, for example, the mid read the imbalances.
- **Head**: a linear map per channel token to the ``forecast`` steps, as a change from the
  channel's last scaled value (zero at start: persistence).

Loss (``lob_platform.training.panel``): MSE plus ``coherence_weight`` x the MSE of the forecast's
step-to-step changes against the true ones (the temporal-coherence term: a forecast path must move
like the real one, not only end near it).
"""

from __future__ import annotations

import torch
from torch import nn

from lob_platform.models.panel_transformer import Attention


def hippo_legs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) of HiPPO-LegS with ``n`` states."""
    q = torch.sqrt(2 * torch.arange(n, dtype=torch.float64) + 1)
    a = -torch.tril(q[:, None] * q[None, :], diagonal=-1) - torch.diag(torch.arange(1, n + 1, dtype=torch.float64))
    return a.float(), q.float()


def discretise(a: torch.Tensor, b: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear discretisation of (A, B) for each step size in ``dt`` (models,): (models, N, N), (models, N)."""
    eye = torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    left = eye - dt[:, None, None] / 2 * a
    right = eye + dt[:, None, None] / 2 * a
    return torch.linalg.solve(left, right), torch.linalg.solve(left, (dt[:, None] * b)[..., None]).squeeze(-1)


class HippoSSM(nn.Module):
    """``d_model`` single-input state-space models sharing a HiPPO-initialised (A, B)."""

    def __init__(self, d_model: int, d_state: int):
        super().__init__()
        a, b = hippo_legs(d_state)
        self.A, self.B = nn.Parameter(a), nn.Parameter(b)
        self.C = nn.Parameter(torch.randn(d_model, d_state) / d_state**0.5)
        self.D = nn.Parameter(torch.ones(d_model))
        self.log_dt = nn.Parameter(torch.empty(d_model).uniform_(torch.log(torch.tensor(1e-3)).item(), torch.log(torch.tensor(1e-1)).item()))

    def kernel(self, length: int) -> torch.Tensor:
        """(d_model, length): C A_d^l B_d."""
        a_d, state = discretise(self.A, self.B, self.log_dt.exp())
        taps = []
        for _ in range(length):
            taps.append((self.C * state).sum(-1))
            state = (a_d @ state.unsqueeze(-1)).squeeze(-1)
        return torch.stack(taps, dim=-1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (batch, length, d_model) -> y, the causal convolution with the kernel plus D u."""
        length = u.shape[1]
        k = self.kernel(length)
        lag = torch.arange(length, device=u.device)
        delay = lag[:, None] - lag[None, :]  # output step t, input step s: t - s
        toeplitz = torch.where(delay >= 0, k[:, delay.clamp(min=0)], torch.zeros((), device=u.device))  # (d, t, s)
        return torch.einsum("dts,bsd->btd", toeplitz, u) + self.D * u


class SSMBlock(nn.Module):
    def __init__(self, d_model: int, d_state: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.ssm = HippoSSM(d_model, d_state)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.out(nn.functional.gelu(self.ssm(self.norm(x)))))


class SSMHippo(nn.Module):
    """Inputs (batch, lookback, channels) with missing flags and the channels' last scaled values
    (batch, channels) -> forecasts (batch, forecast, channels), scaled."""

    def __init__(self, n_channels: int, lookback: int, forecast: int, patch_len: int, patch_stride: int, d_model: int,
                 d_state: int, n_layers: int, n_heads: int, dropout: float):
        super().__init__()
        self.patch_len, self.patch_stride = patch_len, patch_stride
        n_patches = (lookback - patch_len) // patch_stride + 1
        self.patch = nn.Linear(2 * patch_len, d_model)
        self.position = nn.Parameter(torch.randn(n_patches, d_model) * 0.02)
        self.channel = nn.Embedding(n_channels, d_model)
        self.layers = nn.ModuleList(SSMBlock(d_model, d_state, dropout) for _ in range(n_layers))
        self.flatten = nn.Linear(n_patches * d_model, d_model)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.channel_attention = Attention(d_model, n_heads, dropout)
        self.head = nn.Linear(d_model, forecast)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, missing: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        cut = lambda t: t.transpose(1, 2).unfold(-1, self.patch_len, self.patch_stride)  # noqa: E731  (B, C, P, len)
        patches = torch.cat([cut(x), cut(missing.to(x.dtype))], dim=-1)
        h = self.patch(patches) + self.position + self.channel.weight[:, None, :]
        p, d = h.shape[2], h.shape[3]
        h = h.reshape(b * c, p, d)
        for layer in self.layers:
            h = layer(h)
        z = self.flatten(h.reshape(b, c, p * d))
        z = z + self.channel_attention(self.norm1(z), self.norm1(z))
        return last.unsqueeze(1) + self.head(self.norm2(z)).transpose(1, 2)
