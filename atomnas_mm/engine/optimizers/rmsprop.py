"""RMSprop as TensorFlow computes it (the recipe of the paper)."""
from typing import Iterable

import torch
from torch.optim import Optimizer

from ...registry import OPTIMIZERS


@OPTIMIZERS.register_module()
class RMSpropTF(Optimizer):
    """RMSprop with epsilon inside the square root and the learning rate
    inside the momentum buffer, TensorFlow style::

        ms  <- alpha * ms + (1 - alpha) * g^2          (ms starts at 1)
        mom <- momentum * mom + lr * g / sqrt(ms + eps)
        p   <- p - mom

    torch's ``RMSprop`` adds eps outside the root (``sqrt(ms) + eps``) and
    starts ``ms`` at 0, which with eps = 1e-3 is a different optimizer early
    in training.

    Args:
        params: Parameters or groups.
        lr: Learning rate.
        alpha: Decay of the squared-gradient average (TF's ``decay``).
        eps: Added to the average inside the square root.
        momentum: Momentum.
        weight_decay: L2 penalty added to the gradient.
    """

    def __init__(self, params: Iterable, lr: float = 0.016,
                 alpha: float = 0.9, eps: float = 1e-3, momentum: float = 0.9,
                 weight_decay: float = 0.0) -> None:
        for name, value in dict(lr=lr, eps=eps, momentum=momentum,
                                weight_decay=weight_decay).items():
            if value < 0:
                raise ValueError(f'RMSpropTF: {name} must be >= 0, got {value}')
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f'RMSpropTF: alpha must be in [0, 1), got {alpha}')
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps,
                                      momentum=momentum,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group['params']:
                if p.grad is None:
                    continue
                g = p.grad
                if group['weight_decay']:
                    g = g.add(p, alpha=group['weight_decay'])
                state = self.state[p]
                if not state:
                    state['step'] = torch.zeros(())
                    state['square_avg'] = torch.ones_like(
                        p, memory_format=torch.preserve_format)
                    if group['momentum'] > 0:
                        state['momentum_buffer'] = torch.zeros_like(
                            p, memory_format=torch.preserve_format)
                state['step'] += 1
                sq = state['square_avg']
                sq.mul_(group['alpha']).addcmul_(g, g, value=1 - group['alpha'])
                update = g / sq.add(group['eps']).sqrt_()
                if group['momentum'] > 0:
                    buf = state['momentum_buffer']
                    buf.mul_(group['momentum']).add_(update, alpha=group['lr'])
                    p.sub_(buf)
                else:
                    p.sub_(update, alpha=group['lr'])
        return loss
