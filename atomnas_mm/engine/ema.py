"""The moving average of the weights as the authors compute it."""
from typing import Optional

import torch
from mmengine.model import BaseAveragedModel
from torch import nn

from ..registry import MODELS
from .search.importance import warmup_decay


@MODELS.register_module()
class WarmupEMA(BaseAveragedModel):
    """``avg <- d * avg + (1 - d) * w`` every update, with the decay warmed
    up: ``d = min(1 - momentum, (1 + n) / (10 + n))`` at the n-th update
    (TensorFlow's ``num_updates`` rule, which the authors apply with the
    global step). The average starts from the weights training starts with
    (:class:`~atomnas_mm.engine.hooks.EMAHook` copies them in), so early on
    it follows them within tens of steps, and later it is the plain EMA of
    decay ``1 - momentum``.

    mmengine's ``ExponentialMovingAverage`` instead copies the weights at
    its first update and uses one decay from then on (``warmup=False``
    here does the same, for configs that want it).

    With ``update_buffers=True`` (what the authors do) BN running means and
    variances are averaged too. The averaged depthwise-BN gammas are the
    search's ``alpha_hat``.

    Args:
        model: The model to average.
        momentum: ``1 - decay`` (mmengine's convention), in (0, 1).
        warmup: Warm the decay up as above.
        interval, device, update_buffers: As ``BaseAveragedModel``.
    """

    def __init__(self, model: nn.Module, momentum: float = 1e-4,
                 warmup: bool = True, interval: int = 1,
                 device: Optional[torch.device] = None,
                 update_buffers: bool = True) -> None:
        super().__init__(model, interval, device, update_buffers)
        if not 0.0 < momentum < 1.0:
            raise ValueError(f'WarmupEMA: momentum (1 - decay) must be in '
                             f'(0, 1), got {momentum}')
        self.momentum = momentum
        self.warmup = warmup

    def decay(self, n: int) -> float:
        """The decay of the ``n``-th update (from 1)."""
        d = 1.0 - self.momentum
        return warmup_decay(d, n) if self.warmup else d

    @torch.no_grad()
    def start_from(self, model: nn.Module) -> None:
        """Make the average start at ``model``'s weights (before the first
        update)."""
        src = model.state_dict() if self.update_buffers \
            else dict(model.named_parameters())
        for k, p_avg in self.avg_parameters.items():
            p_avg.data.copy_(src[k].data.to(p_avg.device))

    def avg_func(self, averaged_param: torch.Tensor,
                 source_param: torch.Tensor, steps: int) -> None:
        d = self.decay(steps)
        averaged_param.mul_(d).add_(source_param, alpha=1.0 - d)

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """One update, counted from 1 (``steps`` is saved with the EMA, so
        a resumed run continues the warm-up where it was)."""
        if not self.warmup and int(self.steps) == 0:
            return super().update_parameters(model)  # mmengine's first copy
        src = model.state_dict() if self.update_buffers \
            else dict(model.named_parameters())
        n = int(self.steps) + 1
        if int(self.steps) % self.interval == 0:
            for k, p_avg in self.avg_parameters.items():
                if p_avg.dtype.is_floating_point:
                    self.avg_func(p_avg.data, src[k].data.to(p_avg.device), n)
                else:
                    p_avg.data.copy_(src[k].data.to(p_avg.device))
        if not self.update_buffers:
            for b_avg, b_src in zip(self.module.buffers(), model.buffers()):
                b_avg.data.copy_(b_src.data.to(b_avg.device))
        self.steps += 1
