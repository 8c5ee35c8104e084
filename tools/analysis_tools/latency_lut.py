"""Measure a latency table (LUT) of a supernet on this device.

    python tools/analysis_tools/latency_lut.py supernet --out lut_cpu2_b1.json
    python tools/analysis_tools/latency_lut.py supernet --threads 2 --batch 8 --step 16 --out lut_b8.json
    python tools/analysis_tools/latency_lut.py configs/atomnas/atomnas_demo_digits.py --out demo_lut.json
    python tools/analysis_tools/latency_lut.py supernet --device cuda --batch 32 --out lut_gpu.json

For every searchable block position and every kernel, a block holding only
that kernel is timed (eval, no_grad, the backbone's memory format) at 1 atom
and every ``--step`` atoms up to the supernet's count; a few blocks with all
kernels at once give the part every single-kernel block includes (project
BN, residual add, call overhead), counted once in a prediction:

    latency(spec) = fixed parts + sum over blocks of
                    (sum_k curve_k(n_k) - (live kernels - 1) * shared)

with each curve interpolated linearly between its grid points
(:class:`atomnas_mm.models.arch.cost_model.LatencyTable`). The fixed parts
are the stem with the first block, and the head conv with pool and
classifier. The whole supernet is timed too and recorded next to its
prediction (``check``). The JSON records device, threads, batch, input
size, memory format and torch version; a search refuses a table measured at
another input size or batch (``penalty=dict(cost='latency', lut=PATH)``).

Candidates are timed round-robin (``benchmarks/bench_block.py``'s
``time_round_robin``) and each grid point keeps its median (``--statistic
min``: its fastest repetition, which other processes disturb least on a
shared machine; the table records which). Measure on an otherwise idle
machine.
"""
from __future__ import annotations

import argparse
import datetime
import os
import os.path as osp
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from bench_block import calibrate_bn, time_round_robin  # noqa: E402
from atomnas_mm.models.arch import SpecError  # noqa: E402
from atomnas_mm.models.arch.cost import _down, _size  # noqa: E402
from atomnas_mm.models.arch.cost_model import (BlockTable,  # noqa: E402
                                               KernelCurve, LatencyTable)
from atomnas_mm.models.arch.spec import ArchSpec, BlockSpec  # noqa: E402
from atomnas_mm.models.backbones.atomnas import (  # noqa: E402
    MEMORY_FORMATS, AtomNASNet)
from atomnas_mm.models.layers import AtomicBlock, IdentityBlock  # noqa: E402
from atomnas_mm.models.resolve import resolve_arch  # noqa: E402


# ---------------------------------------------------------------- timing
class Timer:
    """Where and how modules are timed.

    Args:
        device: ``'cpu'`` or ``'cuda'``.
        batch: Images per forward.
        memory_format: ``'channels_last'`` or ``'contiguous'``.
        reps: Timed rounds per candidate.
        warmup: Untimed calls per candidate first.
        statistic: What each candidate keeps of its rounds: ``'median'``
            or ``'min'``.
    """

    def __init__(self, device: str = 'cpu', batch: int = 1,
                 memory_format: str = 'channels_last', reps: int = 7,
                 warmup: int = 2, statistic: str = 'median') -> None:
        if statistic not in ('median', 'min'):
            raise ValueError(f'statistic must be median or min, got '
                             f'{statistic!r}')
        self.device = torch.device(device)
        self.batch = batch
        self.fmt = MEMORY_FORMATS[memory_format]
        self.reps, self.warmup = reps, warmup
        self.statistic = statistic

    def prepare(self, module: nn.Module, x: torch.Tensor
                ) -> Callable[[], None]:
        """Calibrated, eval-mode module on the device; a closure doing one
        forward (synchronised on CUDA)."""
        module = module.to(self.device).to(memory_format=self.fmt)
        x = x.to(self.device).contiguous(memory_format=self.fmt)
        calibrate_bn(module, x)  # no denormals from untrained statistics
        module.eval()
        cuda = self.device.type == 'cuda'

        def fwd() -> None:
            with torch.no_grad():
                module(x)
            if cuda:
                torch.cuda.synchronize()
        return fwd

    def medians(self, candidates: Dict[str, Callable[[], None]],
                warm_calls: int = 0) -> Dict[str, float]:
        """Each candidate's ms (its rounds' median, or minimum)."""
        times = time_round_robin(candidates, self.reps, self.warmup,
                                 warm_calls)
        pick = min if self.statistic == 'min' else statistics.median
        return {name: pick(t) for name, t in times.items()}

    def input(self, channels: int, hw) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        return torch.randn(self.batch, channels, *hw, generator=g)


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
    """Measure the latency table of ``spec`` (see the module docstring)."""
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


def main(argv=None) -> LatencyTable:
    parser = argparse.ArgumentParser(
        description='Measure a latency table of a supernet on this device')
    parser.add_argument('arch', help='the supernet: shipped name, spec '
                        'JSON, search checkpoint or config')
    parser.add_argument('--out', required=True, help='JSON file to write')
    parser.add_argument('--input-size', type=int, nargs='+', default=None,
                        metavar='N', help='H W or one side (default: a '
                        'config\'s own, else 224)')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads (CPU); default torch\'s')
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--step', type=int, default=8,
                        help='grid step in atoms (default 8)')
    parser.add_argument('--reps', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--num-classes', type=int, default=None,
                        help='classifier width (default: the config\'s, or '
                        '1000)')
    parser.add_argument('--memory-format', default='channels_last',
                        choices=sorted(MEMORY_FORMATS))
    parser.add_argument('--statistic', default='median',
                        choices=('median', 'min'),
                        help='per grid point: median of the rounds, or the '
                        'fastest (steadier on a shared machine)')
    args = parser.parse_args(argv)
    if args.input_size is not None and len(args.input_size) not in (1, 2):
        parser.error('--input-size takes H W or one side')
    if args.step < 1 or args.batch < 1 or args.reps < 1:
        parser.error('--step, --batch and --reps must be >= 1')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        sys.exit('error: --device cuda but no CUDA device is available')
    try:
        resolved = resolve_arch(args.arch)
    except SpecError as e:
        sys.exit(f'error: {e}')
    if args.input_size is not None:
        size = tuple(args.input_size) * (3 - len(args.input_size))
    else:
        size = resolved.input_size or (224, 224)
    classes = args.num_classes if args.num_classes is not None else \
        resolved.num_classes if resolved.num_classes is not None else 1000
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'[lut] {args.arch}: {size[0]}x{size[1]}, batch {args.batch}, '
          f'{args.device}, {torch.get_num_threads()} threads, step '
          f'{args.step}, reps {args.reps}; load average '
          f'{os.getloadavg()[0]:.1f}')
    table = measure_table(resolved.spec, size, args.batch, args.step,
                          args.reps, args.warmup, args.device, classes,
                          args.memory_format, statistic=args.statistic)
    if osp.dirname(args.out):
        os.makedirs(osp.dirname(args.out), exist_ok=True)
    table.dump(args.out)
    print(f'[lut] written {args.out}')
    return table


if __name__ == '__main__':
    main()
