"""Memory and time of a supernet training step against the batch, with and
without activation checkpointing (``AtomNASNet(with_cp=True)``).

Every measurement runs in a fresh process, so that its peak memory is its
own: the peak resident set size on the CPU (``ru_maxrss``, with glibc told
to return freed tensor memory at once), or
``torch.cuda.max_memory_allocated`` on a GPU. The activations' memory per
image is the slope of the peak against the batch (a least-squares line
over the batches), which leaves out what does not grow with the batch
(weights, gradients, optimizer state, the allocator's own). Step time is
the median of the timed steps at the largest batch, measured in separate
processes with the default allocator. Candidates run in alternating order.

Prints MB per image for each mode, and with_cp / plain for memory per image
and for step time. Goal of the issue: with_cp cuts activation memory at
least 2.5x for at most 1.35x the step time.

    .venv/bin/python benchmarks/bench_memory.py                  # fp32, CPU
    .venv/bin/python benchmarks/bench_memory.py --quick          # seconds
    .venv/bin/python benchmarks/bench_memory.py --amp            # on a GPU
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Sequence

import torch
from torch import nn

from atomnas_mm.models.backbones.atomnas import AtomNASNet


# ------------------------------------------------------------ one process
def peak_rss_mb() -> float:
    """This process's peak resident set size in MB.

    Linux's ``ru_maxrss`` survives ``exec``: a child started from a large
    process (a pytest worker of 1 GB) reports the parent's peak, whatever
    it uses itself. ``VmHWM`` belongs to the process's own memory map.
    """
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(arch: str, side: int, batch: int, with_cp: bool, steps: int,
            amp: bool, threads: int) -> dict:
    """One training step setting in this process: peak memory and times."""
    torch.set_num_threads(threads)
    cuda = torch.cuda.is_available()
    device = 'cuda' if cuda else 'cpu'
    torch.manual_seed(0)
    backbone = AtomNASNet(arch, with_cp=with_cp)
    backbone.init_weights()
    model = nn.Sequential(backbone, Pool(), nn.Linear(
        backbone.head_channels, 1000)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, side, side, device=device)
    y = torch.randint(0, 1000, (batch, ), device=device)
    dtype = torch.bfloat16 if amp else None

    def step():
        with torch.autocast(device, dtype=dtype, enabled=amp):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()

    step()  # optimizer state, allocator warm
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = peak_rss_mb()
    return dict(peak_mb=peak, step_s=statistics.median(times),
                device='cuda' if cuda else 'cpu')


class Pool(nn.Module):
    """Backbone output tuple -> pooled features of the last map."""

    def forward(self, outs):
        return outs[-1].mean((2, 3))


# ------------------------------------------------------------ the driver
def run_one(args, batch: int, with_cp: bool, memory: bool) -> dict:
    """One child process: ``memory`` measures the peak (one timed step),
    else the step time (``--steps`` timed steps)."""
    cmd = [sys.executable, os.path.abspath(__file__), '--child', json.dumps(
        dict(arch=args.arch, side=args.side, batch=batch, with_cp=with_cp,
             steps=1 if memory else args.steps, amp=args.amp,
             threads=args.threads))]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    if memory:
        # glibc keeps freed blocks below its (growing) mmap threshold in the
        # heap, so the peak RSS would count memory freed long before; with
        # a fixed 64 KiB threshold every tensor-sized block goes back when
        # freed, and the peak RSS follows the live tensors. It slows
        # allocation down, so times come from separate runs without it.
        env['MALLOC_MMAP_THRESHOLD_'] = '65536'
    out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         env=env)
    if out.returncode != 0:
        raise SystemExit(f'error: the measurement of batch {batch} '
                         f'(with_cp={with_cp}) failed:\n{out.stderr[-2000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    mx, my = statistics.mean(xs), statistics.mean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum(
        (x - mx)**2 for x in xs)


def main(argv: Sequence[str] = None) -> Dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--arch', default='supernet')
    p.add_argument('--side', type=int, default=224)
    p.add_argument('--batches', type=int, nargs='+', default=[2, 4, 8])
    p.add_argument('--steps', type=int, default=3, help='timed steps')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--amp', action='store_true',
                   help='bf16 autocast (the GPU recipe)')
    p.add_argument('--quick', action='store_true',
                   help='smoke test: 64x64, batches 2 4, one step')
    p.add_argument('--child', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(**json.loads(args.child))))
        return {}
    if args.quick:
        args.side, args.batches, args.steps = 64, [2, 4], 1
    print(f'{args.arch} training step at {args.side}x{args.side}, '
          f'{"bf16 autocast" if args.amp else "fp32"}, {args.threads} '
          f'threads, batches {args.batches}; load average '
          f'{os.getloadavg()[0]:.1f}')
    results: Dict[bool, List[dict]] = {False: [], True: []}
    for i, batch in enumerate(args.batches):
        order = (False, True) if i % 2 == 0 else (True, False)
        for with_cp in order:
            r = run_one(args, batch, with_cp, memory=True)
            if batch == args.batches[-1]:
                r['step_s'] = run_one(args, batch, with_cp,
                                      memory=False)['step_s']
            results[with_cp].append(r)
            print(f'  batch {batch:3d} with_cp={str(with_cp):5s}: peak '
                  f'{r["peak_mb"]:8.0f} MB'
                  + (f', step {r["step_s"]:.3f} s' if batch ==
                     args.batches[-1] else '') + f' ({r["device"]})',
                  flush=True)
    per_image = {cp: slope(args.batches, [r['peak_mb'] for r in rs])
                 for cp, rs in results.items()}
    step = {cp: rs[-1]['step_s'] for cp, rs in results.items()}
    summary = dict(mb_per_image=per_image[False],
                   mb_per_image_cp=per_image[True],
                   # nan, not a crash, when the slope is flat (too small a
                   # setting to see the activations above the noise)
                   memory_ratio=per_image[False] / per_image[True]
                   if per_image[True] > 0 else float('nan'),
                   time_ratio=step[True] / step[False])
    print(f'activations per image: {per_image[False]:.1f} MB plain, '
          f'{per_image[True]:.1f} MB with_cp -> {summary["memory_ratio"]:.2f}'
          f'x less (goal >= 2.5x)')
    print(f'step time at batch {args.batches[-1]}: with_cp / plain = '
          f'{summary["time_ratio"]:.2f} (goal <= 1.35)')
    print(f'load average at end {os.getloadavg()[0]:.1f}')
    return summary


if __name__ == '__main__':
    main()
