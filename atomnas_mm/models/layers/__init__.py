from .atomic_block import AtomicBlock, DepthwiseBranch, ParamSlice, make_act
from .first_block import FirstBlock
from .se import SqueezeExcite

__all__ = ['FirstBlock', 'AtomicBlock', 'DepthwiseBranch', 'ParamSlice', 'SqueezeExcite',
           'make_act']
