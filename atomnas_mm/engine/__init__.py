from .ema import WarmupEMA
from .hooks import (BNRecalibrationHook, CheckpointHook, DynamicShrinkHook,
                    EMAHook)
from .optimizers import (AtomNASAmpOptimWrapper, AtomNASOptimWrapper,
                         AtomNASOptimWrapperConstructor, AtomNASRMSprop,
                         RMSpropTF)
from .recalibrate import recalibrate_bn
from .schedulers import EpochStepLR, WarmupExpDecayLR
from .search import SearchState

__all__ = ['BNRecalibrationHook', 'CheckpointHook', 'DynamicShrinkHook',
           'EMAHook', 'WarmupEMA', 'AtomNASOptimWrapper',
           'AtomNASAmpOptimWrapper', 'AtomNASOptimWrapperConstructor',
           'AtomNASRMSprop', 'RMSpropTF', 'recalibrate_bn', 'EpochStepLR',
           'WarmupExpDecayLR', 'SearchState']
