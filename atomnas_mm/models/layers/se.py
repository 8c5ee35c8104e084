"""Squeeze-and-excitation on a block's expanded channels (the "+" nets)."""
import torch
from torch import nn


class SqueezeExcite(nn.Module):
    """Global pool -> 1x1 reduce -> activation -> 1x1 expand -> sigmoid ->
    channel-wise multiply.

    Args:
        channels: Channels it gates (the block's concatenated expanded
            channels).
        squeeze_channels: Width of the bottleneck.
        act: Activation between the two convs.
    """

    def __init__(self, channels: int, squeeze_channels: int,
                 act: nn.Module) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1, bias=True)
        self.act = act
        self.expand = nn.Conv2d(squeeze_channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H, W)."""
        s = x.mean((2, 3), keepdim=True)
        s = self.expand(self.act(self.reduce(s)))
        return x * torch.sigmoid(s)
