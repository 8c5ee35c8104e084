from .arch import ArchSpec, BlockSpec, SpecError, count, load_spec
from .backbones import AtomNASNet
from .heads import DropoutLinearClsHead
from .layers import AtomicBlock

__all__ = ['ArchSpec', 'BlockSpec', 'SpecError', 'count', 'load_spec',
           'AtomNASNet', 'AtomicBlock', 'DropoutLinearClsHead']
