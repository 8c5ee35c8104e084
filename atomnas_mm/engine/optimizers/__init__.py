from .l1_penalty import (AtomNASAmpOptimWrapper, AtomNASOptimWrapper,
                         AtomNASOptimWrapperConstructor, L1PenaltyMixin)
from .rmsprop_tf import RMSpropTF

__all__ = ['AtomNASOptimWrapper', 'AtomNASAmpOptimWrapper',
           'AtomNASOptimWrapperConstructor', 'L1PenaltyMixin', 'RMSpropTF']
