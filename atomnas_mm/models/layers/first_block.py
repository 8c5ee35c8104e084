"""The fixed first block: a MobileNetV2 block with expansion 1 (not
searched)."""
import torch
from mmcv.cnn import build_norm_layer
from torch import nn

from .atomic_block import make_act
from .se import SqueezeExcite


class FirstBlock(nn.Module):
    """Depthwise k x k -> BN -> act -> [SE] -> 1x1 project -> BN [+ x].

    Args:
        in_channels: Stem channels.
        out_channels: Output channels.
        kernel_size: Depthwise kernel.
        act: ``'relu'`` or ``'swish'``.
        norm_cfg: BN config.
        se_channels: Squeeze width of SE on the depthwise output (0: none).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 act: str, norm_cfg: dict, se_channels: int = 0) -> None:
        super().__init__()
        self.dw_conv = nn.Conv2d(in_channels, in_channels, kernel_size, 1,
                                 kernel_size // 2, groups=in_channels,
                                 bias=False)
        self.dw_bn = build_norm_layer(norm_cfg, in_channels)[1]
        self.act = make_act(act)
        self.se = SqueezeExcite(in_channels, se_channels, make_act(act)) \
            if se_channels else None
        self.project_conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.project_bn = build_norm_layer(norm_cfg, out_channels)[1]
        self.has_residual = in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, Cin, H, W) -> (N, Cout, H, W)."""
        y = self.act(self.dw_bn(self.dw_conv(x)))
        if self.se is not None:
            y = self.se([y])[0]
        y = self.project_bn(self.project_conv(y))
        return y + x if self.has_residual else y
