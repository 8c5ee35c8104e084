from .hooks import BNRecalibrationHook, DynamicShrinkHook
from .optimizers import (AtomNASAmpOptimWrapper, AtomNASOptimWrapper,
                         AtomNASOptimWrapperConstructor, RMSpropTF)
from .recalibrate import recalibrate_bn
from .schedulers import EpochStepLR

__all__ = ['BNRecalibrationHook', 'DynamicShrinkHook', 'AtomNASOptimWrapper',
           'AtomNASAmpOptimWrapper', 'AtomNASOptimWrapperConstructor',
           'RMSpropTF', 'recalibrate_bn', 'EpochStepLR']
