"""mmengine's EMAHook, advancing once per optimizer step."""
from mmengine.hooks import EMAHook as _EMAHook

from ...registry import HOOKS
from ..utils import optimizer_stepped


@HOOKS.register_module()
class EMAHook(_EMAHook):
    """mmengine's ``EMAHook`` (same arguments), updated only on the
    iterations where the optimizer steps.

    Under gradient accumulation (``optim_wrapper.accumulative_counts=k``)
    mmengine's hook averages after every iteration, k times per step, over
    weights that did not change in between: the decay then acts k times
    faster than on k GPUs without accumulation. Here it acts once per step,
    so N GPUs x batch B x accumulation k average the weights as N*k GPUs x
    batch B do. Without accumulation it is mmengine's hook.

    Use it as ``dict(type='atomnas_mm.EMAHook', momentum=...)`` (every
    config of this package does).
    """

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if optimizer_stepped(runner):
            super().after_train_iter(runner, batch_idx, data_batch, outputs)
