from .atomic_block import AtomBranch, AtomicBlock, make_act
from .first_block import FirstBlock
from .se import SqueezeExcite
from .surgery import ParamSlice

__all__ = ['AtomBranch', 'AtomicBlock', 'FirstBlock', 'ParamSlice',
           'SqueezeExcite', 'make_act']
