"""What a residual block becomes when every one of its atoms has died."""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from ..arch.spec import BlockSpec


class IdentityBlock(nn.Module):
    """``x + bias``: the identity plus what the dead block still adds.

    A residual block whose atoms all have gamma 0 outputs ``x + c`` with a
    per-channel constant ``c``: its atoms' outputs are the constants
    ``act(beta)``, which the project conv and BN turn into ``c``. Dropping
    the block without ``c`` would change the net's function, so ``c`` stays
    as a buffer (it is saved in checkpoints and follows the model's device).

    Train mode: before the removal, the project BN normalises with batch
    statistics, which cancel any constant, so the dead block output
    ``x + beta_p`` (the project BN's beta) in train mode and ``x + c`` in
    eval mode. Afterwards it outputs ``x + c`` in both modes: evaluation is
    unchanged, and training sees the eval-mode constant, which is the one
    the deployed net uses.

    Args:
        channels: Input = output channels.
        bias: The constant, shape (channels,); zeros if not given (e.g. before
            a checkpoint's value is loaded).
    """

    def __init__(self, channels: int, bias: torch.Tensor = None) -> None:
        super().__init__()
        self.in_channels = self.out_channels = channels
        self.stride = 1
        self.has_residual = True
        if bias is None:
            bias = torch.zeros(channels)
        if bias.shape != (channels, ):
            raise ValueError(f'IdentityBlock: bias must have shape '
                             f'({channels},), got {tuple(bias.shape)}')
        self.register_buffer('bias', bias.detach().clone().float())

    @property
    def kernels(self) -> Dict[int, int]:
        return {}

    def spec(self) -> BlockSpec:
        return BlockSpec(self.in_channels, self.out_channels, 1, {})

    def importance_bns(self) -> Dict[int, nn.Module]:
        return {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H, W)."""
        return x + self.bias.view(1, -1, 1, 1).to(x.dtype)

    def extra_repr(self) -> str:
        return f'channels={self.in_channels}'
