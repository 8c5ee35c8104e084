"""Squeeze-and-excitation on a block's expanded channels (the "+" nets)."""
from typing import List

import torch
from torch import nn

from .surgery import ParamSlice, slice_param


class SqueezeExcite(nn.Module):
    """Global pool -> 1x1 reduce -> activation -> 1x1 expand -> sigmoid ->
    channel-wise multiply, over the concatenation of the kernels' expanded
    channels (given as one tensor per kernel, so nothing is concatenated
    but the pooled vectors).

    Args:
        channels: Channels it gates (all kernels' expanded channels).
        squeeze_channels: Width of the bottleneck.
        act: Activation between the two convs.
    """

    def __init__(self, channels: int, squeeze_channels: int,
                 act: nn.Module) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1, bias=True)
        self.act = act
        self.expand = nn.Conv2d(squeeze_channels, channels, 1, bias=True)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        """List of (N, C_k, H, W) with sum C_k = channels -> same shapes."""
        s = torch.cat([x.mean((2, 3), keepdim=True) for x in xs], dim=1)
        g = torch.sigmoid(self.expand(self.act(self.reduce(s))))
        gates = torch.split(g, [x.shape[1] for x in xs], dim=1)
        return [x * gk for x, gk in zip(xs, gates)]

    @torch.no_grad()
    def keep_channels(self, index: torch.Tensor,
                      record: List[ParamSlice]) -> None:
        """Keep the gated channels at ``index`` (into the concatenation)."""
        slice_param(self.reduce, 'weight', 1, index, record)
        slice_param(self.expand, 'weight', 0, index, record)
        slice_param(self.expand, 'bias', 0, index, record)
        self.reduce.in_channels = self.expand.out_channels = len(index)
