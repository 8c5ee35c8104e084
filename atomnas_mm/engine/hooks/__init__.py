from .bn_recalibration_hook import BNRecalibrationHook
from .checkpoint_hook import CheckpointHook
from .ema_hook import EMAHook
from .shrink_hook import DynamicShrinkHook

__all__ = ['BNRecalibrationHook', 'CheckpointHook', 'DynamicShrinkHook',
           'EMAHook']
