from .hooks import (BNRecalibrationHook, CheckpointHook, DynamicShrinkHook,
                    EMAHook)
from .optimizers import (AtomNASAmpOptimWrapper, AtomNASOptimWrapper,
                         AtomNASOptimWrapperConstructor, RMSpropTF)
from .recalibrate import recalibrate_bn
from .schedulers import EpochStepLR

__all__ = ['BNRecalibrationHook', 'CheckpointHook', 'DynamicShrinkHook',
           'EMAHook', 'AtomNASOptimWrapper',
           'AtomNASAmpOptimWrapper', 'AtomNASOptimWrapperConstructor',
           'RMSpropTF', 'recalibrate_bn', 'EpochStepLR']
