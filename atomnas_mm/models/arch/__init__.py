"""Architecture as data: the spec, the shipped specs and the cost models.
Nothing here imports torch."""
from .cost import BlockCost, CostReport, atom_cost, count
from .cost_model import (CostModel, CostModelError, LatencyTable,
                         build_cost_model)
from .divisor import first_not_divisible, round_spec
from .spec import (ArchSpec, BlockSpec, Key, SpecError, load_spec,
                   shipped_specs)

__all__ = [
    'ArchSpec', 'BlockSpec', 'SpecError', 'load_spec', 'shipped_specs',
    'Key', 'count', 'atom_cost', 'CostReport', 'BlockCost', 'CostModel',
    'CostModelError', 'LatencyTable', 'build_cost_model',
    'first_not_divisible', 'round_spec'
]
