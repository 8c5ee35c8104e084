"""Architecture as data: the spec, the shipped specs and the cost model.
Nothing here imports torch."""
from .cost import BlockCost, CostReport, atom_costs, count
from .spec import (ArchSpec, BlockSpec, SpecError, load_spec, shipped_specs)

__all__ = [
    'ArchSpec', 'BlockSpec', 'SpecError', 'load_spec', 'shipped_specs',
    'count', 'atom_costs', 'CostReport', 'BlockCost'
]
