from .bn_recalibration_hook import BNRecalibrationHook
from .shrink_hook import DynamicShrinkHook

__all__ = ['BNRecalibrationHook', 'DynamicShrinkHook']
