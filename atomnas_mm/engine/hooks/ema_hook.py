"""mmengine's EMAHook, advancing once per optimizer step, with the authors'
warmed-up average by default."""
from mmengine.hooks import EMAHook as _EMAHook

from ...registry import HOOKS
from ..ema import WarmupEMA
from ..utils import optimizer_stepped


@HOOKS.register_module()
class EMAHook(_EMAHook):
    """mmengine's ``EMAHook`` (same arguments), with two differences.

    * The average is :class:`~atomnas_mm.engine.ema.WarmupEMA` by default
      (the authors': decay warmed up per step, BN running statistics
      averaged too, starting from the weights training starts with, which
      this hook copies in at ``before_train`` unless resumed). Its
      depthwise-BN gammas are the search's ``alpha_hat``. Pass
      ``ema_type='ExponentialMovingAverage'`` for mmengine's.
    * It updates only on the iterations where the optimizer steps. Under
      gradient accumulation (``accumulative_counts=k``) mmengine's hook
      would average k times per step over weights that did not change in
      between, so the decay would act k times faster than on k GPUs
      without accumulation (see the accumulation notes of the search
      guide).

    Use it as ``dict(type='atomnas_mm.EMAHook', momentum=...)`` (every
    config of this package does); ``momentum`` is ``1 - decay``.
    """

    def __init__(self, ema_type: str = 'atomnas_mm.WarmupEMA',
                 **kwargs) -> None:
        super().__init__(ema_type=ema_type, **kwargs)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        ema = self.ema_model
        if isinstance(ema, WarmupEMA) and int(ema.steps) == 0:
            # Built in before_run, before the weights were initialised or
            # loaded: start the average at the weights training starts with.
            ema.start_from(self.src_model)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if optimizer_stepped(runner):
            super().after_train_iter(runner, batch_idx, data_batch, outputs)
