"""Count a *built* net with ``mmengine.analysis``, independently of the
spec-based cost model, under the paper's convention (BN, activations and
residual adds free; SE's multiply and the global pool counted)."""
from collections import Counter
from typing import Sequence, Tuple

import torch
from torch import nn

from ..models.arch.spec import SpecLike
from ..models.backbones import AtomNASNet


def classifier_from_spec(spec: SpecLike, num_classes: int = 1000,
                         **backbone_kwargs) -> nn.Module:
    """Backbone + global average pool + linear classifier, as counted in
    the paper's tables."""
    backbone = AtomNASNet(spec, **backbone_kwargs)
    layers = [_Take(backbone)]
    if num_classes:
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                   nn.Linear(backbone.head_channels, num_classes)]
    return nn.Sequential(*layers)


class _Take(nn.Module):
    """Unwrap the backbone's output tuple (last stage)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)[-1]


def measure(model: nn.Module, input_size: Sequence[int] = (224, 224)
            ) -> Tuple[int, int, int]:
    """MACs (batch 1), conv + linear params, and all params of ``model``.

    Returns:
        (macs, params, params_with_bn)
    """
    from mmengine.analysis import FlopAnalyzer, parameter_count
    from mmengine.analysis.jit_handles import elementwise_flop_counter
    h, w = input_size
    model = model.eval()
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, torch.zeros(1, 3, h, w))
        # BN is free in the paper's count. (A None handle does not remove a
        # default handle in mmengine 0.10.7, so count nothing instead.)
        for op in ('aten::batch_norm', 'aten::group_norm'):
            analyzer.set_op_handle(op, lambda inputs, outputs: Counter())
        # SE's channel-wise multiply: one MAC per output element.
        analyzer.set_op_handle('aten::mul', elementwise_flop_counter(0, 1))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        macs = int(analyzer.total())
    params = sum(
        p.numel() for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
        for p in m.parameters(recurse=False))
    return macs, params, int(parameter_count(model)[''])
