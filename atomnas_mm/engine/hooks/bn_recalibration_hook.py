"""Recompute BN statistics before every validation and test."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.logging import print_log

from ...registry import HOOKS
from ..recalibrate import recalibrate_bn, restore_bn, snapshot_bn
from ..utils import find_ema_hook, unwrap


@HOOKS.register_module()
class BNRecalibrationHook(Hook):
    """Before each validation and test, reset every BN's running statistics
    and recompute them as a cumulative average over ``num_batches`` training
    batches (training pipeline).

    Weights that changed a lot since the statistics were collected (EMA
    weights, a net just shrunk) otherwise meet statistics of other weights.
    It runs after mmengine's ``EMAHook`` has swapped the EMA weights in, so
    with EMA the EMA model is recalibrated. Under DDP the statistics are
    averaged across ranks. After the evaluation the training statistics are
    put back, so training is not disturbed.

    Args:
        num_batches: Training batches to average over (the paper: 10 or 16
            batches of 256 images per GPU during the search).
        progress: Show a progress bar.

    Attributes:
        enabled: False skips the recalibration (an evaluation with the
            training statistics, as the paper's Table 3 compares).
    """

    priority = 'LOW'  # after EMAHook's swap in before_val/test_epoch

    def __init__(self, num_batches: int = 10, progress: bool = True) -> None:
        if num_batches <= 0:
            raise ValueError(f'BNRecalibrationHook: num_batches must be > 0, '
                             f'got {num_batches}')
        self.num_batches = num_batches
        self.progress = progress
        self.enabled = True
        self._saved: Optional[list] = None

    def _before(self, runner) -> None:
        if not self.enabled:
            return
        model = unwrap(runner.model)
        ema = find_ema_hook(runner)
        # When EMA swaps buffers too, the swap-back already restores the
        # training statistics; otherwise keep a copy to put back.
        swaps_buffers = ema is not None and hasattr(ema, 'ema_model') and \
            ema.ema_model.update_buffers
        self._saved = None if swaps_buffers else snapshot_bn(model)
        print_log(f'BN recalibration over {self.num_batches} training '
                  'batches' + (' (EMA weights)' if ema is not None else ''),
                  logger='current')
        used = recalibrate_bn(model, runner.train_dataloader,
                              self.num_batches, self.progress)
        if used < self.num_batches:
            print_log(f'BN recalibration: the training set gave only {used} '
                      'batches', logger='current')

    def _after(self, runner) -> None:
        if self._saved is not None:
            restore_bn(unwrap(runner.model), self._saved)
            self._saved = None

    def before_val_epoch(self, runner) -> None:
        self._before(runner)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._after(runner)

    def before_test_epoch(self, runner) -> None:
        self._before(runner)

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._after(runner)
