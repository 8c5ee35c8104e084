"""RMSprop with epsilon inside the square root: the authors' (the default of
the search configs) and TensorFlow's."""
from typing import Iterable

import torch
from torch.optim import Optimizer

from ...registry import OPTIMIZERS


@OPTIMIZERS.register_module()
class AtomNASRMSprop(Optimizer):
    """RMSprop as the authors' released code runs it::

        ms  <- alpha * ms + (1 - alpha) * g^2       ms starts at square_avg_init
        buf <- momentum * buf + g / sqrt(ms + eps)
        p   <- p - lr * buf                         (lr_in_momentum=False)

    with ``g`` the gradient plus ``weight_decay * p``. torch's ``RMSprop``
    adds eps outside the root (``sqrt(ms) + eps``), which with eps = 1e-3
    is another optimizer early in training.

    Args:
        params: Parameters or groups.
        lr: Learning rate.
        alpha: Decay of the squared-gradient average (TF's ``decay``).
        eps: Added to the average inside the square root.
        momentum: Momentum.
        weight_decay: L2 penalty added to the gradient (the authors add
            ``0.5 * wd * |p|^2`` to the loss: the same gradient).
        square_avg_init: The square average's start: 0 (the authors',
            PyTorch's) or 1 (TensorFlow's; the first steps are then about
            ``1 / sqrt(0.1 g^2 + eps)`` times smaller).
        lr_in_momentum: Multiply the step by lr inside the momentum buffer
            (TensorFlow: a change of lr acts on new gradients only) instead
            of on the whole buffer (PyTorch, the authors').
    """

    def __init__(self, params: Iterable, lr: float = 0.016,
                 alpha: float = 0.9, eps: float = 1e-3, momentum: float = 0.9,
                 weight_decay: float = 0.0, square_avg_init: float = 0.0,
                 lr_in_momentum: bool = False) -> None:
        name = type(self).__name__
        for key, value in dict(lr=lr, eps=eps, momentum=momentum,
                               weight_decay=weight_decay,
                               square_avg_init=square_avg_init).items():
            if value < 0:
                raise ValueError(f'{name}: {key} must be >= 0, got {value}')
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f'{name}: alpha must be in [0, 1), got {alpha}')
        super().__init__(params, dict(
            lr=lr, alpha=alpha, eps=eps, momentum=momentum,
            weight_decay=weight_decay, square_avg_init=square_avg_init,
            lr_in_momentum=lr_in_momentum))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = group['lr']
            for p in group['params']:
                if p.grad is None:
                    continue
                g = p.grad
                if group['weight_decay']:
                    g = g.add(p, alpha=group['weight_decay'])
                state = self.state[p]
                if not state:
                    state['step'] = torch.zeros(())
                    state['square_avg'] = torch.full_like(
                        p, group['square_avg_init'],
                        memory_format=torch.preserve_format)
                    if group['momentum'] > 0:
                        state['momentum_buffer'] = torch.zeros_like(
                            p, memory_format=torch.preserve_format)
                state['step'] += 1
                sq = state['square_avg']
                sq.mul_(group['alpha']).addcmul_(g, g, value=1 - group['alpha'])
                update = g / sq.add(group['eps']).sqrt_()
                inside = group['lr_in_momentum']
                if group['momentum'] > 0:
                    buf = state['momentum_buffer']
                    buf.mul_(group['momentum']).add_(
                        update, alpha=lr if inside else 1.0)
                    p.sub_(buf, alpha=1.0 if inside else lr)
                else:
                    p.sub_(update, alpha=lr)
        return loss


@OPTIMIZERS.register_module()
class RMSpropTF(AtomNASRMSprop):
    """TensorFlow's RMSprop (:class:`AtomNASRMSprop` with its two TF
    defaults: the square average starts at 1 and lr acts inside the
    momentum buffer)."""

    def __init__(self, params: Iterable, lr: float = 0.016,
                 alpha: float = 0.9, eps: float = 1e-3, momentum: float = 0.9,
                 weight_decay: float = 0.0, square_avg_init: float = 1.0,
                 lr_in_momentum: bool = True) -> None:
        super().__init__(params, lr, alpha, eps, momentum, weight_decay,
                         square_avg_init, lr_in_momentum)
