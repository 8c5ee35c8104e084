from .l1_penalty import (AtomNASAmpOptimWrapper, AtomNASOptimWrapper,
                         AtomNASOptimWrapperConstructor, L1PenaltyMixin)
from .rmsprop import AtomNASRMSprop, RMSpropTF

__all__ = ['AtomNASOptimWrapper', 'AtomNASAmpOptimWrapper',
           'AtomNASOptimWrapperConstructor', 'L1PenaltyMixin',
           'AtomNASRMSprop', 'RMSpropTF']
