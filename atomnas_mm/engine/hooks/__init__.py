from .bn_recalibration_hook import BNRecalibrationHook
from .checkpoint_hook import CheckpointHook
from .shrink_hook import DynamicShrinkHook

__all__ = ['BNRecalibrationHook', 'CheckpointHook', 'DynamicShrinkHook']
