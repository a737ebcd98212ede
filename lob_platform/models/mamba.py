"""The Mamba block (Gu & Dao's selective state-space model), two ways with one set of weights:

- on CUDA with mamba-ssm installed (the ``gpu`` extra): ``mamba_ssm.Mamba``, whose fused
  selective-scan kernels run the whole block;
- elsewhere: ``Mamba`` below, a pure-PyTorch module with mamba-ssm's parameter names and shapes
  (``in_proj``, ``conv1d``, ``x_proj``, ``dt_proj``, ``A_log``, ``D``, ``out_proj``), so a
  checkpoint trained on either loads on the other.

The pure module has the two paths of ``mamba_ssm.modules.mamba_simple``: ``forward`` over a whole
sequence (``selective_scan``: a parallel prefix scan on CUDA, a loop over time with its backward
written out on the CPU) and ``step``, one token at a time with a convolution and state cache (the
plain recurrence, used for generation and as the reference ``forward`` is tested against).

Shapes: d_inner = expand * d_model; the state is (batch, d_inner, d_state) per layer.
"""

from __future__ import annotations

import importlib.util
import math

import torch
import torch.nn.functional as F
from torch import nn


def kernels_available() -> bool:
    """Whether mamba-ssm's fused CUDA kernels can run here."""
    return torch.cuda.is_available() and importlib.util.find_spec("mamba_ssm") is not None


def make_mixer(d_model: int, d_state: int, d_conv: int, expand: int, use_kernels: bool) -> nn.Module:
    """mamba-ssm's module where its kernels run (``use_kernels``), the pure one otherwise."""
    if use_kernels:
        from mamba_ssm import Mamba as KernelMamba

        return KernelMamba(d_model=d_model, d_state=d_state, d_conv=d_conv, expand=expand)
    return Mamba(d_model=d_model, d_state=d_state, d_conv=d_conv, expand=expand)


class _LinearScan(torch.autograd.Function):
    """h_t = a_t * h_{t-1} + b_t along dim 1 (h_{-1} = 0) as a Hillis-Steele prefix scan: log2(L)
    rounds of elementwise products, every position at once (the pure path on CUDA). Backward is the
    same scan run backwards in time (g_t = grad_t + a_{t+1} g_{t+1}); only a and h are kept."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h = scan_doubling(a, b)
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, grad_h: torch.Tensor):
        a, h = ctx.saved_tensors
        a_next = torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], dim=1)  # dh_{t+1}/dh_t = a_{t+1}
        grad_b = scan_doubling(a_next.flip(1), grad_h.flip(1)).flip(1)
        h_previous = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)
        return grad_b * h_previous, grad_b


@torch.no_grad()
def scan_doubling(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.clone(), b.clone()
    step = 1
    while step < a.shape[1]:
        b = torch.cat([b[:, :step], a[:, step:] * b[:, :-step] + b[:, step:]], dim=1)
        a = torch.cat([a[:, :step], a[:, step:] * a[:, :-step]], dim=1)
        step *= 2
    return b


class _SequentialScan(torch.autograd.Function):
    """The selective scan as one loop over time on (batch, d_inner, d_state) states (the pure path
    on the CPU), with its backward written out: the (batch, L, d_inner, d_state) decay and drive are
    never materialised, only the states. On this 2-core CPU, 4.5x faster than the parallel form at
    (16, 256, 128, 16), and it spares the allocator one 33 MB tensor per operation."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C):
        u, delta, B, C = (x.transpose(0, 1).contiguous() for x in (u, delta, B, C))  # time first
        states = torch.empty(*delta.shape, A.shape[1], dtype=delta.dtype)  # (L, batch, d_inner, d_state)
        y = torch.empty_like(delta)
        h = torch.zeros_like(states[0])
        for t in range(len(delta)):
            h = torch.addcmul(torch.exp(delta[t].unsqueeze(-1) * A) * h, (delta[t] * u[t]).unsqueeze(-1), B[t].unsqueeze(1))
            states[t] = h
            y[t] = torch.bmm(h, C[t].unsqueeze(-1)).squeeze(-1)
        ctx.save_for_backward(u, delta, A, B, C, states)
        return y.transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_y):
        u, delta, A, B, C, states = ctx.saved_tensors
        grad_y = grad_y.transpose(0, 1).contiguous()
        grad_u, grad_delta, grad_B, grad_C = (torch.empty_like(x) for x in (u, delta, B, C))
        grad_A = torch.zeros(A.shape, dtype=delta.dtype)
        g = torch.zeros_like(states[0])  # dLoss/dh_t, everything after t included
        for t in range(len(delta) - 1, -1, -1):
            g = torch.addcmul(g, grad_y[t].unsqueeze(-1), C[t].unsqueeze(1))
            grad_C[t] = torch.bmm(states[t].transpose(1, 2), grad_y[t].unsqueeze(-1)).squeeze(-1)
            decay = torch.exp(delta[t].unsqueeze(-1) * A)
            g_drive = torch.bmm(g, B[t].unsqueeze(-1)).squeeze(-1)  # dLoss/d(delta u) per channel
            grad_u[t] = delta[t] * g_drive
            grad_delta[t] = u[t] * g_drive
            if t > 0:
                g_exponent = g * states[t - 1] * decay  # dLoss/d(delta A)
                grad_delta[t] += (g_exponent * A).sum(-1)
                grad_A += (g_exponent * delta[t].unsqueeze(-1)).sum(0)
            grad_B[t] = torch.bmm(g.transpose(1, 2), (delta[t] * u[t]).unsqueeze(-1)).squeeze(-1)
            g = g * decay
        return (grad_u.transpose(0, 1), grad_delta.transpose(0, 1), grad_A.to(A.dtype), grad_B.transpose(0, 1),
                grad_C.transpose(0, 1))


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor) -> torch.Tensor:
    """The selective scan of mamba-ssm's ``selective_scan_ref`` (delta already through softplus).

    u, delta: (batch, L, d_inner); A: (d_inner, d_state); B, C: (batch, L, d_state); D: (d_inner,).
    Returns y: (batch, L, d_inner), y_t = C_t . h_t + D u_t with
    h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t. On CUDA, the parallel form (``_LinearScan``);
    on the CPU, the loop over time (``_SequentialScan``).
    """
    if not u.is_cuda:
        return _SequentialScan.apply(u, delta, A, B, C) + u * D
    return parallel_selective_scan(u, delta, A, B, C) + u * D


def parallel_selective_scan(u, delta, A, B, C) -> torch.Tensor:
    decay = torch.exp(delta.unsqueeze(-1) * A)  # (batch, L, d_inner, d_state)
    drive = (delta * u).unsqueeze(-1) * B.unsqueeze(2)  # (batch, L, d_inner, d_state)
    return torch.einsum("bldn,bln->bld", _LinearScan.apply(decay, drive), C)


class Mamba(nn.Module):
    """Pure-PyTorch Mamba block with mamba-ssm's parameters and initialisation."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_min: float = 0.001,
                 dt_max: float = 0.1, dt_init_floor: float = 1e-4):
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def _ssm_inputs(self, x: torch.Tensor):
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(F.linear(dt, self.dt_proj.weight) + self.dt_proj.bias)
        return delta, B, C

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: (batch, L, d_model) -> (batch, L, d_model), the parallel path."""
        length = hidden.shape[1]
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (batch, L, d_inner) each
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :length].transpose(1, 2))  # causal depthwise convolution
        delta, B, C = self._ssm_inputs(x)
        y = selective_scan(x, delta, -torch.exp(self.A_log.float()), B, C, self.D)
        return self.out_proj(y * F.silu(z))

    def initial_state(self, batch: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(convolution cache (batch, d_inner, d_conv), SSM state (batch, d_inner, d_state)), zeros."""
        return (torch.zeros(batch, self.d_inner, self.d_conv, device=device),
                torch.zeros(batch, self.d_inner, self.d_state, device=device))

    def step(self, hidden: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """One token: hidden (batch, d_model) and the state -> (output (batch, d_model), new state)."""
        conv_state, ssm_state = state
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (batch, d_inner)
        conv_state = torch.cat([conv_state[:, :, 1:], x.unsqueeze(-1)], dim=-1)
        x = F.silu((conv_state * self.conv1d.weight.squeeze(1)).sum(-1) + self.conv1d.bias)
        delta, B, C = self._ssm_inputs(x)
        A = -torch.exp(self.A_log.float())
        ssm_state = torch.exp(delta.unsqueeze(-1) * A) * ssm_state + (delta * x).unsqueeze(-1) * B.unsqueeze(1)
        y = torch.einsum("bdn,bn->bd", ssm_state, C) + self.D * x
        return self.out_proj(y * F.silu(z)), (conv_state, ssm_state)
