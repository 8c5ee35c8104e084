from .atomic_block import AtomBranch, AtomicBlock, make_act
from .checkpoint import checkpointed
from .first_block import FirstBlock
from .identity_block import IdentityBlock
from .se import SqueezeExcite
from .surgery import ParamSlice, drop_params

__all__ = ['AtomBranch', 'AtomicBlock', 'FirstBlock', 'IdentityBlock',
           'ParamSlice', 'SqueezeExcite', 'checkpointed', 'drop_params',
           'make_act']
