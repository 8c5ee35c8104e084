"""Timing on a small shared machine, as the benchmarks and the latency tool
do it.

Absolute times on a shared CPU are noisy, so candidates are timed
round-robin (one call of each in turn, starting at a different candidate
every round) and a ratio of two candidates is the median over rounds of
their times *in the same round*: slow phases of the machine hit both sides
alike. Untrained nets get BN statistics from one batch first, so that no
activation decays into denormals (many times slower on a CPU).

The benchmark scripts share their command line (:func:`add_common_args`)
and their start (:func:`run_sections`: threads, load average, total time).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, Dict, List, Sequence

import torch
from torch import nn

from ..models.backbones.atomnas import MEMORY_FORMATS
from .seams import BatchNormBase


# --------------------------------------------------------------- rounds
def time_round_robin(candidates: Dict[str, Callable[[], None]], reps: int,
                     warmup: int, warm_calls: int = 0
                     ) -> Dict[str, List[float]]:
    """Time callables interleaved, one call of each per round.

    Args:
        candidates: Name -> a callable doing one unit of work.
        reps: Timed rounds.
        warmup: Untimed calls of each candidate first (oneDNN picks and
            caches kernels, the allocator grows its pools).
        warm_calls: Untimed calls of a candidate right before each of its
            timed calls: its weights are in the caches, as when a deployed
            net runs alone (without, a candidate after many large others
            reads its weights from memory).

    Returns:
        Name -> list of ``reps`` times in ms, entry ``r`` from round ``r``.
    """
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    times: Dict[str, List[float]] = {n: [0.0] * reps for n in names}
    for r in range(reps):
        # Rotate the start so that no candidate always runs right after the
        # same other one (cache and allocator state carry over).
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            for _ in range(warm_calls):
                candidates[name]()
            t0 = time.perf_counter()
            candidates[name]()
            times[name][r] = (time.perf_counter() - t0) * 1e3
    return times


def paired_ratio(times: Dict[str, List[float]], num: str, den: str) -> float:
    """Median over rounds of ``times[num][r] / times[den][r]``."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def median(values: Sequence[float]) -> float:
    """The median (a shorthand for the tables)."""
    return statistics.median(values)


def spread(values: Sequence[float]) -> float:
    """(max - min) / median, a rough noise indicator in percent."""
    return 100.0 * (max(values) - min(values)) / median(values)


# --------------------------------------------------------------- modules
@torch.no_grad()
def calibrate_bn(net: nn.Module, x: torch.Tensor) -> None:
    """Set every BN's running stats to the statistics of one batch, and
    leave ``net`` in eval mode.

    With untrained weights and fresh running stats (mean 0, var 1) eval-mode
    activations shrink or grow block after block; tiny values become
    denormals, which are many times slower on CPU and would distort the
    timing. Real trained nets keep their activations normalised.

    Args:
        net: The module to calibrate, in place.
        x: One input batch.
    """
    bns = [m for m in net.modules() if isinstance(m, BatchNormBase)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch -> its stats
    net.train()
    net(x)
    for bn in bns:
        bn.momentum = 0.1
    net.eval()


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

    def input(self, channels: int, hw: Sequence[int]) -> torch.Tensor:
        """A fixed random batch of ``channels`` x ``hw`` on the CPU."""
        g = torch.Generator().manual_seed(0)
        return torch.randn(self.batch, channels, *hw, generator=g)


# --------------------------------------------------------------- scripts
def add_common_args(p: argparse.ArgumentParser, sections: dict, reps: int,
                    quick: str) -> None:
    """Options every benchmark script shares.

    Args:
        p: The script's parser.
        sections: Name -> function of each section (``--sections``).
        reps: Default timed rounds.
        quick: Help of ``--quick`` (what the smoke mode does).
    """
    p.add_argument('--reps', type=int, default=reps,
                   help='timed rounds per candidate')
    p.add_argument('--warmup', type=int, default=1,
                   help='untimed calls per candidate before timing')
    p.add_argument('--threads', type=int, default=2,
                   help='torch.set_num_threads')
    p.add_argument('--sections', nargs='+', choices=list(sections),
                   default=list(sections), help='which sections to run')
    p.add_argument('--quick', action='store_true', help=quick)


def start(args: argparse.Namespace) -> None:
    """Set the thread count and print the conditions of the run.

    Other processes on the machine change absolute times a lot (and with
    more threads than free cores, OpenMP barriers can dominate), so the
    load is printed next to the numbers.

    Args:
        args: ``threads``, ``reps``, ``warmup`` and ``quick`` of
            :func:`add_common_args`.
    """
    torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'reps {args.reps}, warmup {args.warmup}'
          f'{", QUICK (numbers meaningless)" if args.quick else ""}')
    load = os.getloadavg()[0]
    print(f'{os.cpu_count()} CPUs, load average at start {load:.1f}')
    if load + args.threads > (os.cpu_count() or 1) + 0.5:
        hint = ' Consider --threads 1.' if args.threads > 1 else ''
        print('WARNING: busy machine; with more threads than idle cores '
              f'times are distorted.{hint}')


def run_sections(args: argparse.Namespace, sections: dict) -> None:
    """Print the conditions, run the chosen sections, print the total.

    Args:
        args: The parsed command line (:func:`add_common_args`).
        sections: Name -> function taking ``args``.
    """
    start(args)
    t0 = time.perf_counter()
    for name in args.sections:
        sections[name](args)
    print(f'\ntotal wall time {time.perf_counter() - t0:.0f} s, load average '
          f'at end {os.getloadavg()[0]:.1f}')
