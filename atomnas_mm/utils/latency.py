"""Measure a latency table (:class:`~atomnas_mm.models.arch.cost_model.
LatencyTable`) of a supernet on this device.

For every searchable block position and every kernel, a block holding only
that kernel is timed (eval, no_grad, the backbone's memory format) at 1 atom
and every ``step`` atoms up to the supernet's count; a few blocks with all
kernels at once give the part every single-kernel block includes (project
BN, residual add, call overhead), counted once in a prediction. The fixed
parts are the stem with the first block, and the head conv with pool and
classifier. ``tools/analysis_tools/latency_lut.py`` is the command line.
"""
from __future__ import annotations

import datetime
import platform
import statistics
import time
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from ..models.arch.cost import _down, _size
from ..models.arch.cost_model import BlockTable, KernelCurve, LatencyTable
from ..models.arch.spec import ArchSpec, BlockSpec
from ..models.backbones.atomnas import AtomNASNet
from ..models.layers import AtomicBlock, IdentityBlock
from .timing import Timer, time_round_robin


def grid(n: int, step: int) -> List[int]:
    """1, every ``step`` atoms, and ``n``."""
    return sorted({1, *range(step, n + 1, step), n})


def _block(spec: ArchSpec, b: BlockSpec, kernels: Dict[int, int]):
    return AtomicBlock(BlockSpec(b.in_channels, b.out_channels, b.stride,
                                 kernels), spec.activation,
                       spec.se_channels(b.in_channels))


def measure_block(timer: Timer, spec: ArchSpec, index: int, hw, step: int,
                  levels: Sequence[float] = (0.25, 0.5, 1.0)) -> BlockTable:
    """Curves of one block position, its shared part and (with a residual)
    its identity."""
    b = spec.blocks[index]
    x = timer.input(b.in_channels, hw)
    curves = {}
    for k, n in b.kernels.items():
        atoms = grid(n, step)
        cands = {str(a): timer.prepare(_block(spec, b, {k: a}), x)
                 for a in atoms}
        med = timer.medians(cands)
        curves[k] = KernelCurve(atoms, [med[str(a)] for a in atoms])
        del cands
    shared = 0.0
    if len(b.kernels) > 1:
        # Paired: the whole block and its single-kernel blocks at a few
        # levels, timed in the same rounds.
        diffs = []
        for level in levels:
            counts = {k: max(1, int(round(level * n / step)) * step
                             if n >= step else n)
                      for k, n in b.kernels.items()}
            counts = {k: min(c, b.kernels[k]) for k, c in counts.items()}
            cands = {'all': timer.prepare(_block(spec, b, counts), x)}
            for k, c in counts.items():
                cands[f'k{k}'] = timer.prepare(_block(spec, b, {k: c}), x)
            times = time_round_robin(cands, timer.reps, timer.warmup)
            if timer.statistic == 'min':
                per = [min(times[f'k{k}']) for k in counts]
                diffs.append((sum(per) - min(times['all'])) /
                             (len(counts) - 1))
            else:
                per_round = [sum(times[f'k{k}'][r] for k in counts) -
                             times['all'][r] for r in range(timer.reps)]
                diffs.append(statistics.median(per_round) /
                             (len(counts) - 1))
        shared = statistics.median(diffs)
    identity = 0.0
    if b.has_residual:
        med = timer.medians({'id': timer.prepare(
            IdentityBlock(b.in_channels), x)})
        identity = med['id']
    return BlockTable(curves, shared, identity)


class _Head(nn.Module):
    """Head conv, global pool and classifier (what the net adds after the
    last block)."""

    def __init__(self, head: Optional[nn.Module], channels: int,
                 num_classes: int) -> None:
        super().__init__()
        self.head = head
        self.fc = nn.Linear(channels, num_classes) if num_classes else None

    def forward(self, x):
        x = self.head(x)
        x = x.mean((2, 3))
        return self.fc(x) if self.fc is not None else x


class _Stem(nn.Module):
    """Stem conv and the fixed first block."""

    def __init__(self, net: AtomNASNet) -> None:
        super().__init__()
        self.stem, self.first = net.stem, net.first

    def forward(self, x):
        return self.first(self.stem(x))


class FullNet(nn.Module):
    """A whole classifier as deployed: backbone, pool, linear."""

    def __init__(self, spec: ArchSpec, num_classes: int,
                 memory_format: str = 'channels_last') -> None:
        super().__init__()
        self.backbone = AtomNASNet(spec, memory_format=memory_format)
        self.backbone.init_weights()
        self.fc = nn.Linear(spec.head_channels, num_classes) \
            if num_classes else None

    def forward(self, x):
        x = self.backbone(x)[-1].mean((2, 3))
        return self.fc(x) if self.fc is not None else x


def measure_fixed(timer: Timer, spec: ArchSpec, input_size,
                  num_classes: int) -> Dict[str, float]:
    """ms of the parts every net of ``spec``'s family has: ``'stem'`` (stem
    and first block) and ``'head'`` (head conv, pool, classifier)."""
    net = AtomNASNet(spec, memory_format='contiguous')
    net.init_weights()
    hw = _size(input_size)
    first = _down(hw, 2)
    last = first
    for b in spec.blocks:
        last = _down(last, b.stride)
    cin = spec.blocks[-1].out_channels if spec.blocks else \
        spec.first_channels
    med = timer.medians({
        'stem': timer.prepare(_Stem(net), timer.input(3, hw)),
        'head': timer.prepare(_Head(net.head, spec.head_channels,
                                    num_classes), timer.input(cin, last)),
    })
    return med


def measure_nets(timer: Timer, specs: Dict[str, ArchSpec], input_size,
                 num_classes: int, memory_format: str = 'channels_last'
                 ) -> Dict[str, float]:
    """ms of whole nets (backbone + pool + classifier), timed round-robin
    together, each timed call right after an untimed one of the same net
    (warm caches, as the table's blocks are timed and as a deployed net
    runs; interleaved cold, 25 nets measured 1.5-2.6x slower)."""
    hw = _size(input_size)
    cands = {name: timer.prepare(FullNet(s, num_classes, memory_format),
                                 timer.input(3, hw))
             for name, s in specs.items()}
    return timer.medians(cands, warm_calls=1)


def measure_table(spec: ArchSpec, input_size=224, batch: int = 1,
                  step: int = 8, reps: int = 7, warmup: int = 2,
                  device: str = 'cpu', num_classes: int = 1000,
                  memory_format: str = 'channels_last',
                  progress: bool = True,
                  statistic: str = 'median') -> LatencyTable:
    """Measure the latency table of ``spec`` (see the module docstring).

    Args:
        spec: The supernet.
        input_size: One side or (H, W).
        batch: Images per forward.
        step: Grid step in atoms.
        reps: Timed rounds per candidate.
        warmup: Untimed calls per candidate first.
        device: ``'cpu'`` or ``'cuda'``.
        num_classes: Classifier width (0: none).
        memory_format: ``'channels_last'`` or ``'contiguous'``.
        progress: Print a line per block and the check.
        statistic: Per grid point, ``'median'`` of the rounds or ``'min'``.

    Returns:
        The table; its ``meta`` records the conditions and, as ``check``,
        the whole supernet measured next to its prediction.
    """
    timer = Timer(device, batch, memory_format, reps, warmup, statistic)
    t0 = time.perf_counter()
    fixed = measure_fixed(timer, spec, input_size, num_classes)
    blocks = []
    hw = _down(_size(input_size), 2)
    for i, b in enumerate(spec.blocks):
        blocks.append(measure_block(timer, spec, i, hw, step))
        hw = _down(hw, b.stride)
        if progress:
            full = blocks[-1].ms(b.kernels)
            print(f'[lut] block {i:>2}/{len(spec.blocks) - 1} '
                  f'{b.in_channels}->{b.out_channels} s{b.stride} '
                  f'{dict(b.kernels)}: full {full:.3f} ms, shared '
                  f'{blocks[-1].shared_ms:.3f} ms '
                  f'({time.perf_counter() - t0:.0f} s)', flush=True)
    dev = torch.device(device)
    meta = dict(
        device=dev.type,
        device_name=(torch.cuda.get_device_name(dev) if dev.type == 'cuda'
                     else platform.processor() or platform.machine()),
        threads=torch.get_num_threads(), batch=batch,
        input_size=list(_size(input_size)), num_classes=num_classes,
        memory_format=memory_format, runtime='torch',
        torch=torch.__version__.split('+')[0], step=step, reps=reps,
        warmup=warmup, statistic=statistic, fixed_parts_ms=fixed,
        created=datetime.datetime.now().isoformat(timespec='seconds'))
    table = LatencyTable(spec, fixed['stem'] + fixed['head'], blocks, meta)
    measured = measure_nets(timer, {'supernet': spec}, input_size,
                            num_classes, memory_format)['supernet']
    predicted = table.predict(spec)
    table.meta['check'] = dict(supernet_ms=measured,
                               predicted_ms=predicted)
    table.meta['seconds'] = round(time.perf_counter() - t0, 1)
    if progress:
        print(f'[lut] supernet measured {measured:.2f} ms, predicted '
              f'{predicted:.2f} ms ({100 * (predicted / measured - 1):+.1f}%)'
              f', {table.meta["seconds"]:.0f} s in all')
    return table
