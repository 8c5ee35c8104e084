"""The authors' learning-rate schedule: linear warm-up, then exponential
decay counted from the first step."""
import math

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF

from ...registry import PARAM_SCHEDULERS
from ...utils.seams import ParamSchedulerBase


@PARAM_SCHEDULERS.register_module()
class WarmupExpDecayLR(LRSchedulerMixin, ParamSchedulerBase):
    """``lr(i) = lr * f(i)`` at iteration ``i`` (from 0), in closed form::

        f(i) = start_factor + i / warmup * (1 - start_factor)   i <= warmup
        f(i) = max(min_factor, gamma ** floor(i / decay_every))  after

    (``i / decay_every`` without the floor when ``staircase=False``). The
    decay counts from the first iteration, not from the warm-up's end, so
    the rate drops to ``gamma ** floor(warmup / decay_every)`` right after
    the warm-up, and ``decay_every`` may be any fraction of an epoch: the
    authors' ``exp_decaying`` schedule with their warm-up (from the base
    rate of 256 images to the rate of the total batch: ``start_factor`` =
    256 / batch for the paper's 0.016 per 256 images; no warm-up when the
    batch is 256 or less). ``--auto-scale-lr`` keeps that rule when the
    batch changes.

    Use it alone (it sets the rate, it does not chain) and, in an
    epoch-based config, with ``convert_to_iter_based=True`` so that the
    warm-up and the decay points fall on the right iterations.

    Args:
        optimizer: The optimizer (wrapper).
        warmup: Warm-up length (iterations; epochs with ``by_epoch``).
        start_factor: ``f(0)``; 1 disables the warm-up.
        decay_every: Decay period (iterations; epochs with ``by_epoch``).
        gamma: Decay per period.
        staircase: Decay in steps (the authors' ``lr_stepwise: False``) or
            smoothly.
        min_factor: Floor of the decay (their ``exp_decaying_trunc``: 0.05).
        begin, end, last_step, by_epoch, verbose: As mmengine's schedulers.
    """

    def __init__(self, optimizer, warmup: float = 0, start_factor: float = 1.0,
                 decay_every: float = 1.0, gamma: float = 0.97,
                 staircase: bool = True, min_factor: float = 0.0,
                 begin: int = 0, end: int = INF, last_step: int = -1,
                 by_epoch: bool = False, verbose: bool = False) -> None:
        if warmup < 0 or decay_every <= 0:
            raise ValueError(f'WarmupExpDecayLR: warmup must be >= 0 and '
                             f'decay_every > 0, got {warmup}, {decay_every}')
        if not 0 < start_factor <= 1 or not 0 < gamma <= 1:
            raise ValueError(f'WarmupExpDecayLR: start_factor and gamma must '
                             f'be in (0, 1], got {start_factor}, {gamma}')
        self.warmup = float(warmup)
        self.start_factor = float(start_factor)
        self.decay_every = float(decay_every)
        self.gamma = float(gamma)
        self.staircase = staircase
        self.min_factor = float(min_factor)
        super().__init__(optimizer, begin=begin, end=end,
                         last_step=last_step, by_epoch=by_epoch,
                         verbose=verbose)

    @classmethod
    def build_iter_from_epoch(cls, *args, warmup: float = 0,
                              decay_every: float = 1.0, begin=0, end=INF,
                              by_epoch=True, epoch_length=None, **kwargs):
        """Epochs to iterations (fractions kept: the decay points are those
        of ``floor(i / (epoch_length * decay_every))``)."""
        if not by_epoch:
            raise ValueError('WarmupExpDecayLR.build_iter_from_epoch needs '
                             'by_epoch=True (lengths in epochs)')
        if not epoch_length or epoch_length <= 0:
            raise ValueError(f'WarmupExpDecayLR: epoch_length must be '
                             f'positive, got {epoch_length}')
        return cls(*args, warmup=warmup * epoch_length,
                   decay_every=decay_every * epoch_length,
                   begin=int(begin * epoch_length),
                   end=end if end == INF else int(end * epoch_length),
                   by_epoch=False, **kwargs)

    def factor(self, i: int) -> float:
        """``f(i)`` of the class docstring."""
        if self.start_factor < 1 and i <= self.warmup:
            return self.start_factor + i / self.warmup * (
                1 - self.start_factor) if self.warmup else 1.0
        periods = i / self.decay_every
        if self.staircase:
            periods = math.floor(periods)
        return max(self.min_factor, self.gamma ** periods)

    def _get_value(self):
        f = self.factor(self.last_step)
        return [base * f for base in self.base_values]
