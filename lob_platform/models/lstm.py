"""The LOB-LSTM classifier: a window of events x features -> LSTM -> logits of (down, up).

Shapes: input (batch, window, features); the last step's hidden state -> linear -> (batch, 2).
"""

from __future__ import annotations

import torch
from torch import nn

from lob_platform.models.specs import LSTMSpec


class LSTMClassifier(nn.Module):
    def __init__(self, n_features: int, spec: LSTMSpec, n_classes: int = 2):
        super().__init__()
        self.lstm = nn.LSTM(n_features, spec.hidden_size, num_layers=spec.num_layers, batch_first=True,
                            dropout=spec.dropout if spec.num_layers > 1 else 0.0)
        self.head = nn.Linear(spec.hidden_size, n_classes)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(windows)  # (batch, window, hidden)
        return self.head(output[:, -1])  # (batch, n_classes)
