"""The gated MLP (SwiGLU; Shazeer 2020) of the hybrid decoder's blocks (issue 15).

Parameter names and shapes are mamba_ssm's `GatedMLP` (modules/mlp.py), which `MambaLMHeadModel` puts
after each mixer when `d_intermediate` > 0 (hidden_features = d_intermediate, out_features = d_model):

    y, gate = fc1(x)              (2 hidden, in_features), the first half is y
    out     = fc2(y * SiLU(gate)) (out_features, hidden)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class GatedMLP(nn.Module):
    """x -> fc2(y * act(gate)), the hidden size rounded up to a multiple of `multiple_of`."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        activation: Callable[[torch.Tensor], torch.Tensor] = F.silu,
        bias: bool = False,
        multiple_of: int = 128,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        out_features = in_features if out_features is None else out_features
        # 8/3 d keeps the parameter count of a 4 d two-matrix MLP (Shazeer 2020); rounding suits matmuls.
        hidden = int(8 * in_features / 3) if hidden_features is None else hidden_features
        self.hidden_features = -(-hidden // multiple_of) * multiple_of
        factory = {"device": device, "dtype": dtype}
        self.fc1 = nn.Linear(in_features, 2 * self.hidden_features, bias=bias, **factory)
        self.activation = activation
        self.fc2 = nn.Linear(self.hidden_features, out_features, bias=bias, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, gate = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(y * self.activation(gate))
