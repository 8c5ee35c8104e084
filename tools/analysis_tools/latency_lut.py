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
(:class:`atomnas_mm.models.arch.cost_model.LatencyTable`; measured by
:mod:`atomnas_mm.utils.latency`). The fixed parts are the stem with the
first block, and the head conv with pool and classifier. The whole supernet
is timed too and recorded next to its prediction (``check``). The JSON records device, threads, batch, input
size, memory format and torch version; a search refuses a table measured at
another input size or batch (``penalty=dict(cost='latency', lut=PATH)``).

Candidates are timed round-robin (``atomnas_mm.utils.timing``'s
``time_round_robin``) and each grid point keeps its median (``--statistic
min``: its fastest repetition, which other processes disturb least on a
shared machine; the table records which). Measure on an otherwise idle
machine.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

import torch

from atomnas_mm.models.arch import LatencyTable, SpecError
from atomnas_mm.models.backbones.atomnas import MEMORY_FORMATS
from atomnas_mm.models.resolve import resolve_arch
from atomnas_mm.utils.latency import measure_table


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
