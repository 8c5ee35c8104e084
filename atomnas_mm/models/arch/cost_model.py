"""One cost measure for a search: MACs, params or latency, in one place.

Pure Python, no torch: the penalty's per-atom weights, the shrink's
``delta``, a budget's target and the logged cost all come from the same
:class:`CostModel`, built by :func:`build_cost_model`::

    cm = build_cost_model('macs', input_size=224, num_classes=1000)
    cm.total(spec)       # the net's cost, in cm.unit
    cm.atom_costs(spec)  # (block, kernel) -> cost of one atom of it here
    cm.fixed(spec)       # stem, first block, head, classifier: never shrinks
    cm.minimum(spec, 8)  # the least a search can reach (with divisor 8)

``cost`` is one of

* ``'macs'``: multiply-accumulates, the paper's convention (:func:`count`);
* ``'params'``: conv and linear weights and biases (BN excluded);
* ``'latency'``: milliseconds predicted by a latency table measured on the
  user's device (:class:`LatencyTable`, written by
  ``tools/analysis_tools/latency_lut.py``): fixed parts plus, per block, a
  shared part plus one interpolated curve per kernel;
* ``'equal'``: the paper's Table 2 baseline: every atom has penalty weight
  1; sizes (delta, targets, logs) are still counted in MACs.

MACs and params are linear in the atom counts, so an atom's cost is exact;
latency is not, and an atom's cost is the secant of its kernel's curve over
one grid step below the current count.
"""
from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .cost import _size, atom_cost, count
from .spec import ArchSpec, BlockSpec, Key, SpecError, SpecLike, load_spec
Size = Union[int, Sequence[int]]

#: cost option -> what totals are counted in (the measure)
MEASURE_OF = {'macs': 'macs', 'params': 'params', 'latency': 'latency',
              'equal': 'macs'}
UNITS = {'macs': 'MACs', 'params': 'params', 'latency': 'ms'}
LUT_FORMAT = 'atomnas_mm.latency_lut'
LUT_VERSION = 1


class CostModelError(ValueError):
    """A cost measure or latency table that cannot be used; one line naming
    the field and the fix."""


# ---------------------------------------------------------------- helpers
def _emptied(spec: ArchSpec) -> ArchSpec:
    """The spec with every block's atoms removed (not a valid net when a
    block has no residual; only for counting what never shrinks)."""
    out = copy.deepcopy(spec)
    for b in out.blocks:
        b.kernels = {}
    return out


def format_cost(value: float, measure: str) -> str:
    """``'359.86M MACs'``, ``'4.74M params'``, ``'8.12 ms'``."""
    if measure == 'latency':
        return f'{value:.3f} ms'
    return f'{value / 1e6:.4g}M {UNITS[measure]}'


# ---------------------------------------------------------------- models
class CostModel:
    """The cost of a net and of each of its atoms, in one measure.

    Attributes:
        cost: The option it was built with (``'macs'``, ``'params'``,
            ``'latency'``, ``'equal'``).
        measure: What totals count: ``'macs'``, ``'params'`` or
            ``'latency'``.
        unit: ``'MACs'``, ``'params'`` or ``'ms'``.
        input_size: (H, W) the costs are counted at.
        num_classes: Classifier width counted in totals.
    """

    def __init__(self, cost: str, input_size: Size = 224,
                 num_classes: int = 1000) -> None:
        self.cost = cost
        self.measure = MEASURE_OF[cost]
        self.unit = UNITS[self.measure]
        self.input_size = _size(input_size)
        self.num_classes = num_classes

    # -- to implement
    def total(self, spec: SpecLike) -> float:
        raise NotImplementedError

    def block_cost(self, spec: ArchSpec, index: int,
                   kernels: Mapping[int, int]) -> float:
        """Cost of block ``index`` of ``spec`` with ``kernels`` atoms (its
        share of :meth:`total`; 0 atoms: what is left of it)."""
        raise NotImplementedError

    def atom_costs(self, spec: SpecLike) -> Dict[Key, float]:
        """(block, kernel) -> the cost of one atom of that kernel at
        ``spec`` (what removing it saves)."""
        raise NotImplementedError

    # -- shared
    def macs(self, spec: SpecLike) -> int:
        """MACs, whatever the measure (logged as ``macs``)."""
        return count(spec, self.input_size, self.num_classes).macs

    def total_with(self, spec: ArchSpec,
                   counts: Mapping[Key, int]) -> float:
        """:meth:`total` of ``spec`` with the atom counts of the kernels in
        ``counts`` replaced (e.g. by how many atoms are still alive)."""
        out = copy.deepcopy(spec)
        for i, b in enumerate(out.blocks):
            b.kernels = {k: int(counts.get((i, k), n))
                         for k, n in b.kernels.items()
                         if counts.get((i, k), n) > 0}
        return self.total(out)

    def fixed(self, spec: SpecLike) -> float:
        """What no search can remove: stem, fixed first block, head conv,
        pool and classifier (and, for latency, what an identity block still
        costs)."""
        spec = load_spec(spec)
        return self.total(_emptied(spec))

    def minimum(self, spec: SpecLike, divisor: int = 1) -> float:
        """The least a search from ``spec`` can reach: :meth:`fixed` plus,
        for every block without residual, ``divisor`` atoms (or all it has)
        of its cheapest kernel, which such a block always keeps."""
        spec = load_spec(spec)
        least = self.fixed(spec)
        for i, b in enumerate(spec.blocks):
            if b.has_residual or not b.kernels:
                continue
            least += min(
                self.block_cost(spec, i, {k: min(n, divisor)}) -
                self.block_cost(spec, i, {})
                for k, n in b.kernels.items())
        return least

    def penalty_costs(self, spec: SpecLike) -> Dict[Key, float]:
        """The L1 penalty's per-atom weights before normalisation: the atom
        costs, or 1 for every atom with ``cost='equal'``."""
        costs = self.atom_costs(spec)
        if self.cost == 'equal':
            return {key: 1.0 for key in costs}
        return costs

    def format(self, value: float) -> str:
        return format_cost(value, self.measure)

    def describe(self) -> str:
        h, w = self.input_size
        return (f'{self.cost} ({self.unit}) at {h}x{w}, '
                f'{self.num_classes} classes')


class LinearCostModel(CostModel):
    """MACs or params: linear in every kernel's atom count, so
    ``total = fixed + sum over atoms of their cost`` holds exactly (params
    with SE: plus each SE's reduce bias while its block has atoms). Atom
    costs are :func:`~atomnas_mm.models.arch.cost.atom_cost`'s."""

    def _per_atom(self, spec: ArchSpec) -> List[Dict[int, int]]:
        report = count(spec, self.input_size, self.num_classes)
        return [b.atom_macs if self.measure == 'macs' else b.atom_params
                for b in report.blocks]

    def total(self, spec: SpecLike) -> float:
        r = count(spec, self.input_size, self.num_classes)
        return float(r.macs if self.measure == 'macs' else r.params)

    def block_cost(self, spec: ArchSpec, index: int,
                   kernels: Mapping[int, int]) -> float:
        where = count(spec, self.input_size, self.num_classes).blocks[index]
        block = spec.blocks[index]
        sq = spec.se_channels(block.in_channels)
        j = 0 if self.measure == 'macs' else 1
        cost = sum(n * atom_cost(block, k, where.in_hw, where.out_hw, sq)[j]
                   for k, n in kernels.items() if n)
        if self.measure == 'params' and sq and any(kernels.values()):
            cost += sq  # SE reduce conv's bias
        return float(cost)

    def atom_costs(self, spec: SpecLike) -> Dict[Key, float]:
        spec = load_spec(spec)
        return {(i, k): float(c) for i, per_atom in enumerate(
            self._per_atom(spec)) for k, c in per_atom.items()}


# ---------------------------------------------------------------- latency
def _interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear through (xs, ys), extended linearly past both ends
    (never below 0)."""
    if len(xs) == 1:
        return max(0.0, ys[0] * x / xs[0])
    if x <= xs[0]:
        j = 0
    elif x >= xs[-1]:
        j = len(xs) - 2
    else:
        lo, hi = 0, len(xs) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if xs[mid] <= x:
                lo = mid
            else:
                hi = mid
        j = lo
    x0, x1, y0, y1 = xs[j], xs[j + 1], ys[j], ys[j + 1]
    return max(0.0, y0 + (y1 - y0) * (x - x0) / (x1 - x0))


@dataclass
class KernelCurve:
    """Latency (ms) of a block holding only this kernel, at some atom
    counts (ascending). Made non-decreasing on load: more atoms never cost
    less (measurement noise would otherwise give negative atom costs)."""
    atoms: List[int]
    ms: List[float]

    def __post_init__(self) -> None:
        run = -math.inf
        mono = []
        for v in self.ms:
            run = max(run, float(v))
            mono.append(run)
        self.ms = mono

    def __call__(self, n: float) -> float:
        return _interp(self.atoms, self.ms, n)


@dataclass
class BlockTable:
    """One block position of a latency table.

    ``ms(kernels) = sum_k curve_k(n_k) - (live kernels - 1) * shared_ms``:
    each curve is a whole single-kernel block, so the part every kernel's
    measurement includes (project BN, residual add, call overhead) is
    counted once. A block without atoms costs ``identity_ms``.
    """
    kernels: Dict[int, KernelCurve]
    shared_ms: float = 0.0
    identity_ms: float = 0.0

    def ms(self, kernels: Mapping[int, int]) -> float:
        live = [(k, n) for k, n in kernels.items() if n > 0]
        if not live:
            return self.identity_ms
        return sum(self.kernels[k](n) for k, n in live) - \
            (len(live) - 1) * self.shared_ms


@dataclass
class LatencyTable:
    """Per-block latency curves measured on one device (the JSON file of
    ``tools/analysis_tools/latency_lut.py``).

    ``predict(spec) = fixed_ms + sum over blocks of BlockTable.ms``.

    Attributes:
        supernet: The space it was measured on; specs it predicts must be
            sub-nets of it.
        fixed_ms: Stem, first block, head conv, pool and classifier.
        blocks: One :class:`BlockTable` per searchable block.
        meta: How it was measured: ``device``, ``device_name``,
            ``threads``, ``batch``, ``input_size`` [H, W], ``num_classes``,
            ``memory_format``, ``runtime``, ``torch``, ``step``, ``reps``,
            ``created``, and ``check`` (measured vs predicted supernet).
    """
    supernet: ArchSpec
    fixed_ms: float
    blocks: List[BlockTable]
    meta: Dict = field(default_factory=dict)
    path: str = ''

    # -------------------------------------------------------- prediction
    def block_ms(self, index: int, kernels: Mapping[int, int]) -> float:
        return self.blocks[index].ms(kernels)

    def predict(self, spec: SpecLike) -> float:
        spec = load_spec(spec)
        self.check_spec(spec)
        return self.fixed_ms + sum(self.block_ms(i, b.kernels)
                                   for i, b in enumerate(spec.blocks))

    def check_spec(self, spec: ArchSpec, name: str = 'the spec') -> None:
        """Raise a one-line :class:`CostModelError` unless ``spec`` is a
        sub-net of the table's supernet (same stem, first block, head)."""
        sup = self.supernet
        where = self.path or 'the latency table'
        if (spec.stem_channels, spec.first_channels, spec.first_kernel,
                spec.head_channels, spec.activation, spec.se_ratio) != \
                (sup.stem_channels, sup.first_channels, sup.first_kernel,
                 sup.head_channels, sup.activation, sup.se_ratio):
            raise CostModelError(
                f'{where}: measured on another supernet (stem '
                f'{sup.stem_channels}, head {sup.head_channels}, '
                f'{sup.activation}, se {sup.se_ratio}) than {name} (stem '
                f'{spec.stem_channels}, head {spec.head_channels}, '
                f'{spec.activation}, se {spec.se_ratio}); measure one for '
                'this supernet with tools/analysis_tools/latency_lut.py')
        try:
            spec.check_subnet_of(sup, name, 'the latency table\'s supernet')
        except SpecError as e:
            raise CostModelError(f'{where}: {e}; measure one for this '
                                 'supernet with tools/analysis_tools/'
                                 'latency_lut.py') from None

    def check_conditions(self, input_size: Size, batch: int,
                         field_prefix: str = 'penalty') -> None:
        """Refuse (one line naming the field and the fix) a table measured
        at another input size or batch than the search counts at."""
        h, w = _size(input_size)
        th, tw = self.meta.get('input_size', (None, None))
        where = self.path or 'the latency table'
        if (th, tw) != (h, w):
            raise CostModelError(
                f'{field_prefix}.lut: {where} was measured at input '
                f'{th}x{tw} but {field_prefix}.input_size is {h}x{w}: '
                f'measure a table at {h}x{w} (latency_lut.py ... '
                f'--input-size {h} {w}) or set {field_prefix}.input_size='
                f'({th}, {tw})')
        tb = self.meta.get('batch')
        if tb != batch:
            raise CostModelError(
                f'{field_prefix}.lut: {where} was measured at batch {tb} but '
                f'{field_prefix}.batch is {batch}: measure a table with '
                f'--batch {batch} or set {field_prefix}.batch={tb}')

    # -------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        return dict(
            format=LUT_FORMAT, version=LUT_VERSION, **self.meta,
            supernet=self.supernet.to_dict(), fixed_ms=self.fixed_ms,
            blocks=[dict(shared_ms=b.shared_ms, identity_ms=b.identity_ms,
                         kernels={str(k): dict(atoms=list(c.atoms),
                                               ms=list(c.ms))
                                  for k, c in b.kernels.items()})
                    for b in self.blocks])

    def dump(self, path: str) -> None:
        tmp = f'{path}.tmp'
        with open(tmp, 'w') as f:
            json.dump(self.to_dict(), f, indent=1)
            f.write('\n')
        os.replace(tmp, path)

    @classmethod
    def from_dict(cls, data: Mapping, path: str = '') -> 'LatencyTable':
        where = path or 'latency table'

        def bad(what: str) -> CostModelError:
            return CostModelError(f'{where}: {what} (write one with '
                                  'tools/analysis_tools/latency_lut.py)')

        if not isinstance(data, Mapping) or data.get('format') != LUT_FORMAT:
            raise bad(f'not a latency table (no "format": "{LUT_FORMAT}")')
        if data.get('version') != LUT_VERSION:
            raise bad(f'version {data.get("version")!r}, expected '
                      f'{LUT_VERSION}')
        for key in ('supernet', 'fixed_ms', 'blocks', 'input_size', 'batch'):
            if key not in data:
                raise bad(f'missing "{key}"')
        try:
            supernet = load_spec(data['supernet'])
        except SpecError as e:
            raise bad(f'supernet: {e}') from None
        raw = data['blocks']
        if not isinstance(raw, list) or len(raw) != len(supernet.blocks):
            raise bad(f'"blocks" must list the supernet\'s '
                      f'{len(supernet.blocks)} blocks')
        blocks = []
        for i, (b, s) in enumerate(zip(raw, supernet.blocks)):
            curves = {}
            for k, n in s.kernels.items():
                c = (b.get('kernels') or {}).get(str(k))
                if not isinstance(c, Mapping) or not c.get('atoms') or \
                        len(c['atoms']) != len(c.get('ms') or ()):
                    raise bad(f'blocks[{i}].kernels.{k}: needs "atoms" and '
                              '"ms" of the same length')
                atoms = [int(a) for a in c['atoms']]
                if atoms != sorted(set(atoms)) or atoms[0] < 1:
                    raise bad(f'blocks[{i}].kernels.{k}.atoms: must be '
                              'positive and strictly increasing')
                curves[k] = KernelCurve(atoms, [float(v) for v in c['ms']])
            blocks.append(BlockTable(curves, float(b.get('shared_ms', 0.0)),
                                     float(b.get('identity_ms', 0.0))))
        meta = {k: v for k, v in data.items()
                if k not in ('format', 'version', 'supernet', 'fixed_ms',
                             'blocks')}
        meta['input_size'] = list(_size(meta['input_size']))
        return cls(supernet, float(data['fixed_ms']), blocks, meta, path)

    @classmethod
    def load(cls, path: str) -> 'LatencyTable':
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise CostModelError(f'{path}: no such latency table (write one '
                                 'with tools/analysis_tools/latency_lut.py)')
        try:
            with open(path, encoding='utf-8') as f:
                data = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CostModelError(f'{path}: not a JSON latency table '
                                 f'({type(e).__name__})') from None
        return cls.from_dict(data, path)


class LatencyCostModel(CostModel):
    """Latency predicted by a :class:`LatencyTable` (ms)."""

    def __init__(self, table: LatencyTable, input_size: Size = 224,
                 num_classes: int = 1000) -> None:
        super().__init__('latency', input_size, num_classes)
        self.table = table

    def total(self, spec: SpecLike) -> float:
        return self.table.predict(spec)

    def block_cost(self, spec: ArchSpec, index: int,
                   kernels: Mapping[int, int]) -> float:
        return self.table.block_ms(index, kernels)

    def step(self) -> int:
        return int(self.table.meta.get('step') or 8)

    def atom_costs(self, spec: SpecLike) -> Dict[Key, float]:
        spec = load_spec(spec)
        out = {}
        for i, b in enumerate(spec.blocks):
            for k, n in b.kernels.items():
                s = min(self.step(), n)
                less = dict(b.kernels)
                less[k] = n - s
                out[(i, k)] = max(0.0, (self.table.block_ms(i, b.kernels) -
                                        self.table.block_ms(i, less)) / s)
        return out

    def describe(self) -> str:
        m = self.table.meta
        return (f'latency (ms) from {self.table.path or "a table"} '
                f'({m.get("device_name") or m.get("device")}, '
                f'{m.get("threads")} threads, batch {m.get("batch")}, '
                f'{self.input_size[0]}x{self.input_size[1]})')


def build_cost_model(cost: str = 'macs', input_size: Size = 224,
                     num_classes: int = 1000,
                     lut: Optional[Union[str, LatencyTable]] = None,
                     batch: int = 1,
                     field_prefix: str = 'penalty') -> CostModel:
    """The cost model of a search.

    Args:
        cost: ``'macs'``, ``'params'``, ``'latency'`` or ``'equal'``.
        input_size: (H, W) or one side the costs are counted at.
        num_classes: Classifier width counted in totals.
        lut: Latency table (path or loaded) for ``cost='latency'``.
        batch: The batch latency is meant at (must match the table's).
        field_prefix: How the config names these options (messages).

    Raises:
        CostModelError: an unknown cost, latency without a table, a table
            measured at another input size or batch.
    """
    if cost not in MEASURE_OF:
        raise CostModelError(f'{field_prefix}.cost: {cost!r} is not one of '
                             f'{", ".join(MEASURE_OF)}')
    if cost != 'latency':
        if lut is not None:
            raise CostModelError(f'{field_prefix}.lut is only read with '
                                 f"{field_prefix}.cost='latency' (cost is "
                                 f'{cost!r})')
        return LinearCostModel(cost, input_size, num_classes)
    if lut is None:
        raise CostModelError(
            f"{field_prefix}.cost='latency' needs {field_prefix}.lut=PATH, "
            'a table measured on the target device with tools/'
            'analysis_tools/latency_lut.py')
    table = lut if isinstance(lut, LatencyTable) else LatencyTable.load(lut)
    table.check_conditions(input_size, batch, field_prefix)
    return LatencyCostModel(table, input_size, num_classes)
