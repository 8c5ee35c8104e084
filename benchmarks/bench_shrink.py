"""CPU cost of dynamic shrinkage: a shrunk net against a fresh one, step
time against MACs along a shrink, and a whole demo search against training
its result from scratch.

Three sections, all in one run:

1. ``shrink``: one training step (forward + backward + optimizer step,
   batch ``--batch`` at ``--side`` x ``--side``) of the ``supernet`` backbone
   with a linear head, right after :meth:`AtomNASNet.keep_atoms` removed a
   random 60% of every kernel's atoms and the optimizer's state followed
   (:func:`follow_in_optimizer`, as :class:`DynamicShrinkHook` does), against
   ``AtomNASNet(<the shrunk spec>)`` built fresh. A shrunk net that kept
   stale layouts (weights or optimizer state no longer channels_last,
   strided views) would be slower than the fresh one at equal MACs. Also
   prints whether the shrunk net's parameters and optimizer state have
   exactly the fresh net's strides.

2. ``curve``: the same training step along a shrink from ``supernet`` down
   to about the size of AtomNAS-C (each kernel keeps 100%, 70%, 50%, 35%,
   25% of its atoms, nested random subsets, each stage shrunk from the
   previous one), as ms per GMAC: does the time fall with the MACs?

3. ``search``: wall time of the digits demo search
   (``configs/atomnas/atomnas_demo_digits.py``, all hooks as configured)
   against training its ``searched_arch.json`` from scratch for the same
   epochs: same config without :class:`DynamicShrinkHook` and with the plain
   ``OptimWrapper`` (no L1 penalty); EMA and BN recalibration kept. The
   paper reports 1.172x for the search of AtomNAS-C over its training.

Absolute times on a small shared CPU are noisy, so sections 1 and 2 time
their candidates round-robin and print medians of same-round ratios (see
:mod:`atomnas_mm.utils.timing`). Section 3 runs each training once, so its ratio
carries the machine's noise; the load average is printed around each run.

Run::

    .venv/bin/python benchmarks/bench_shrink.py            # all sections
    .venv/bin/python benchmarks/bench_shrink.py --quick    # smoke test
    .venv/bin/python benchmarks/bench_shrink.py --sections shrink --reps 15
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import os.path as osp
import sys
import tempfile
import time
import warnings
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from atomnas_mm.engine.optimizers import RMSpropTF
from atomnas_mm.engine.utils import follow_in_optimizer
from atomnas_mm.models.arch import ArchSpec, count
from atomnas_mm.models.backbones.atomnas import AtomNASNet
from atomnas_mm.utils.timing import (add_common_args, median, paired_ratio,
                                     run_sections, spread, time_round_robin)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

CL = torch.channels_last
NUM_CLASSES = 10  # the linear head of the timed nets
SHRINK_KEEP = 0.4  # section 1: keep 40% of every kernel's atoms
CURVE_KEEP = (1.0, 0.7, 0.5, 0.35, 0.25)  # section 2: fraction of the start
DEMO_CONFIG = osp.join(ROOT, 'configs', 'atomnas', 'atomnas_demo_digits.py')

Plan = Dict[int, Dict[int, torch.Tensor]]


# --------------------------------------------------------------------- nets
class Trainee:
    """A backbone + linear head, its optimizer and one fixed batch.

    Kept together so that ``copy.deepcopy`` copies the optimizer's state
    keyed by the copied parameters (one memo for all of them).

    Args:
        arch: Spec of the backbone (name, dict or :class:`ArchSpec`).
        args: Command line (batch, side, optimizer).
        seed: Seed of the weights and the batch.
    """

    def __init__(self, arch, args: argparse.Namespace, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.backbone = AtomNASNet(arch)
        self.backbone.init_weights()
        self.head = nn.Linear(self.backbone.head_channels, NUM_CLASSES)
        self.model = nn.ModuleDict(dict(backbone=self.backbone,
                                        head=self.head)).train()
        self.optimizer = make_optimizer(self.model.parameters(), args.optim)
        self.x = torch.randn(args.batch, 3, args.side, args.side)
        self.y = torch.randint(0, NUM_CLASSES, (args.batch, ))

    def step(self) -> None:
        """One training step: forward, cross entropy, backward, update."""
        self.optimizer.zero_grad(set_to_none=True)
        feats = self.backbone(self.x)[0].mean((2, 3))
        F.cross_entropy(self.head(feats), self.y).backward()
        self.optimizer.step()

    def shrink(self, plan: Plan) -> float:
        """Apply ``plan`` as the shrink hook does; return the time in ms."""
        t0 = time.perf_counter()
        records = self.backbone.keep_atoms(plan)
        follow_in_optimizer(self.optimizer, records)
        return (time.perf_counter() - t0) * 1e3


def make_optimizer(params, name: str) -> torch.optim.Optimizer:
    """The demo recipe's RMSpropTF (square average + momentum state) or SGD
    with momentum. A small lr: the batch is random, only the cost counts."""
    if name == 'rmsprop_tf':
        return RMSpropTF(params, lr=1e-3, alpha=0.9, eps=1e-3, momentum=0.9,
                         weight_decay=1e-5)
    return torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-5)


def random_plan(spec: ArchSpec, keep: float, seed: int) -> Plan:
    """Keep ``round(keep * n)`` random atoms (at least one) of every kernel."""
    gen = torch.Generator().manual_seed(seed)
    plan: Plan = {}
    for i, b in enumerate(spec.blocks):
        plan[i] = {
            k: torch.randperm(n, generator=gen)[:max(1, round(keep * n))]
            .sort().values
            for k, n in b.kernels.items()
        }
    return plan


class NestedShrink:
    """Plans that shrink a net to fractions of its starting atoms through
    nested random subsets: one fixed random order of each kernel's atoms,
    the first ``fraction * n`` of them stay.

    Args:
        spec: The starting spec.
        seed: Seed of the random orders.
    """

    def __init__(self, spec: ArchSpec, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.order = {(i, k): torch.randperm(n, generator=gen)
                      for i, b in enumerate(spec.blocks)
                      for k, n in b.kernels.items()}
        # Original indices of the atoms still in the net, sorted as the
        # net holds them.
        self.alive = {key: torch.arange(len(o))
                      for key, o in self.order.items()}

    def plan(self, fraction: float) -> Plan:
        """Keep-indices (positions in the current net) for ``fraction``."""
        plan: Plan = {}
        for (i, k), order in self.order.items():
            keep = order[:max(1, round(fraction * len(order)))].sort().values
            pos = torch.searchsorted(self.alive[(i, k)], keep)
            plan.setdefault(i, {})[k] = pos
            self.alive[(i, k)] = keep
        return plan


def gmacs(spec, side: int, num_classes: int = NUM_CLASSES) -> float:
    """GMACs of one image (backbone, pool and linear head)."""
    return count(spec, side, num_classes).macs / 1e9


# --------------------------------------------------------------------- layout
def layout_report(shrunk: Trainee, fresh: Trainee) -> None:
    """Print how the shrunk net's parameters and optimizer state are laid
    out, against the fresh net's: a slice that lost channels_last, or a
    state buffer with other strides than its parameter, costs time in
    every step."""
    cl = [p.is_contiguous(memory_format=CL)
          for p in shrunk.model.parameters() if p.dim() == 4]
    ok = 'OK' if all(cl) else 'NOT OK'
    print(f'memory format: {sum(cl)}/{len(cl)} 4-D conv weights of the '
          f'shrunk net are channels_last ({ok})')
    # Size-1 dims make many weights both "contiguous" and "channels_last",
    # so also compare the exact strides with the fresh net's.
    mine = dict(shrunk.model.named_parameters())
    ref = dict(fresh.model.named_parameters())
    same = [n for n, p in mine.items()
            if n in ref and p.shape == ref[n].shape
            and p.stride() == ref[n].stride()]
    print(f'parameters with the fresh net\'s shape and strides: '
          f'{len(same)}/{len(mine)} (fresh net: {len(ref)} parameters)')

    def state_strides(t: Trainee) -> Dict[Tuple[str, str], tuple]:
        names = {id(p): n for n, p in t.model.named_parameters()}
        return {(names[id(p)], k): (v.shape, v.stride())
                for p, s in t.optimizer.state.items() if id(p) in names
                for k, v in s.items() if torch.is_tensor(v) and v.dim()}

    mine_s, ref_s = state_strides(shrunk), state_strides(fresh)
    same_s = sum(1 for key, v in mine_s.items() if ref_s.get(key) == v)
    # Strides of size-1 dims do not move any element: index_select gives
    # 1x1 and depthwise slices other such strides than .to(channels_last),
    # with the same bytes in the same order.
    same_l = sum(1 for key, v in mine_s.items()
                 if key in ref_s and same_layout(v, ref_s[key]))
    orphans = len(shrunk.optimizer.state) - sum(
        1 for p in shrunk.model.parameters() if p in shrunk.optimizer.state)
    print(f'optimizer state tensors with the fresh optimizer\'s shape and '
          f'strides: {same_s}/{len(mine_s)} exactly, {same_l}/{len(mine_s)} '
          f'ignoring size-1 dims (fresh: {len(ref_s)}); state of parameters '
          f'no longer in the net: {orphans}')


def same_layout(a: Tuple[torch.Size, tuple],
                b: Tuple[torch.Size, tuple]) -> bool:
    """Whether two (shape, strides) place every element at the same
    offset, i.e. equal shapes and equal strides on the dims of size > 1."""
    (shape_a, stride_a), (shape_b, stride_b) = a, b
    return shape_a == shape_b and all(
        sa == sb for n, sa, sb in zip(shape_a, stride_a, stride_b) if n > 1)


# --------------------------------------------------------------------- 1
def bench_shrink(args: argparse.Namespace) -> None:
    """Section 1: train step right after a shrink vs the same spec fresh."""
    print(f'\n== 1. shrink: train step (fwd + bwd + {args.optim}), batch '
          f'{args.batch} at {args.side}x{args.side}, right after a shrink vs '
          'built fresh ==')
    shrunk = Trainee('supernet', args, seed=0)
    # Steps before the shrink, so that the optimizer has state to follow.
    for _ in range(2):
        shrunk.step()
    start = shrunk.backbone.arch_spec
    plan = random_plan(start, SHRINK_KEEP, seed=0)
    ms = shrunk.shrink(plan)
    spec = shrunk.backbone.arch_spec
    print(f'supernet {start.num_atoms} atoms, '
          f'{gmacs(start, args.side) * 1e3:.1f}M MACs at {args.side}; '
          f'kept a random {SHRINK_KEEP:.0%} of '
          f'each kernel (seed 0): {spec.num_atoms} atoms, '
          f'{gmacs(spec, args.side) * 1e3:.1f}M MACs '
          f'({gmacs(spec, 224, 1000) * 1e3:.0f}M at 224, 1000 classes)')
    print(f'keep_atoms + follow_in_optimizer: {ms:.0f} ms')

    fresh = Trainee(spec, args, seed=1)
    # First steps (oneDNN picks kernels for the new shapes; the fresh
    # optimizer creates its state): shown, not part of the ratio.
    firsts = {}
    for name, t in (('shrunk', shrunk), ('fresh', fresh)):
        t0 = time.perf_counter()
        t.step()
        firsts[name] = (time.perf_counter() - t0) * 1e3
    print(f'first step after the shrink {firsts["shrunk"]:.0f} ms, first '
          f'step of the fresh net {firsts["fresh"]:.0f} ms')
    layout_report(shrunk, fresh)

    times = time_round_robin({'shrunk': shrunk.step, 'fresh': fresh.step},
                             args.reps, args.warmup)
    print(f'{"candidate":<12}{"median ms":>12}{"spread%":>10}')
    for name, t in times.items():
        print(f'{name:<12}{median(t):>12.1f}{spread(t):>10.0f}')
    r = paired_ratio(times, 'shrunk', 'fresh')
    verdict = 'within' if 0.95 <= r <= 1.05 else 'OUTSIDE'
    print(f'shrunk / fresh time (median of same-round ratios): {r:.3f} '
          f'({verdict} 0.95-1.05)')
    del shrunk, fresh
    gc.collect()


# --------------------------------------------------------------------- 2
def bench_curve(args: argparse.Namespace) -> None:
    """Section 2: step time against MACs along a nested shrink."""
    print(f'\n== 2. curve: train step (fwd + bwd + {args.optim}), batch '
          f'{args.batch} at {args.side}x{args.side}, along a shrink of the '
          'supernet ==')
    stages: List[Trainee] = [Trainee('supernet', args, seed=0)]
    stages[0].step()  # optimizer state to carry along the shrink
    shrinker = NestedShrink(stages[0].backbone.arch_spec, seed=0)
    shrinker.plan(CURVE_KEEP[0])
    for fraction in CURVE_KEEP[1:]:
        # Each stage is the previous one shrunk further (weights and
        # optimizer state included), as during a search.
        t = copy.deepcopy(stages[-1])
        t.shrink(shrinker.plan(fraction))
        t.step()
        stages.append(t)
    specs = [t.backbone.arch_spec for t in stages]
    # MACs at the timed input size (with the 10-class head) give ms/GMAC;
    # MACs at 224 with 1000 classes relate the stages to the paper's nets.
    g = [gmacs(s, args.side) for s in specs]
    g224 = [gmacs(s, 224, 1000) for s in specs]
    names = [f's{i}' for i in range(len(stages))]
    times = time_round_robin({n: t.step for n, t in zip(names, stages)},
                             args.reps, args.warmup)
    print(f'MACs per image at {args.side}x{args.side} ({NUM_CLASSES}-class '
          'head); ms/GMAC = ms per step / (batch x GMACs per image); ratios '
          'to s0 are medians of same-round ratios')
    print(f'{"stage":<6}{"keep":>6}{"atoms":>7}{"MACs(M)":>9}{"@224(M)":>9}'
          f'{"ms/step":>9}{"ms/GMAC":>9}{"time/s0":>9}{"MACs/s0":>9}'
          f'{"spread%":>9}')
    for i, (n, s) in enumerate(zip(names, specs)):
        per_gmac = median(times[n]) / (args.batch * g[i])
        print(f'{n:<6}{CURVE_KEEP[i]:>6.2f}{s.num_atoms:>7}{g[i] * 1e3:>9.1f}'
              f'{g224[i] * 1e3:>9.0f}{median(times[n]):>9.1f}{per_gmac:>9.2f}'
              f'{paired_ratio(times, n, "s0"):>9.2f}{g[i] / g[0]:>9.2f}'
              f'{spread(times[n]):>9.0f}')
    print(f'(AtomNAS-C: {gmacs("atomnas_c", 224, 1000) * 1e3:.0f}M MACs at '
          '224)')
    del stages
    gc.collect()


# --------------------------------------------------------------------- 3
def demo_config(work_dir: str, data_root: str, epochs: int,
                subset: int = 0):
    """The digits demo config, in ``work_dir``, for ``epochs`` epochs, with
    WARNING-level logging and no progress bars (output only).

    Args:
        work_dir: Work dir of the run.
        data_root: The digits class-folder tree.
        epochs: Training epochs.
        subset: Train on the first ``subset`` images only (0: all).
    """
    from mmengine.config import Config
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.work_dir = work_dir
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = data_root
    if subset:
        cfg.train_dataloader.dataset.indices = subset
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_interval = min(cfg.train_cfg.val_interval, epochs)
    # The cosine schedule ends with the run, as it does in the full config.
    cfg.param_scheduler[-1].end = epochs
    cfg.log_level = 'WARNING'
    for hook in cfg.custom_hooks:
        if hook.type.endswith('BNRecalibrationHook'):
            hook.progress = False
    return cfg


@contextlib.contextmanager
def quiet_stdout():
    """Send stdout (file descriptor 1) to /dev/null for a while.

    The shrink hook's final BN recalibration draws a progress bar whatever
    the config says, through a ``sys.stdout`` bound when mmengine was
    imported, so only the descriptor itself can be redirected. Warnings and
    errors (stderr) still show.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, 'w') as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run_training(cfg) -> Tuple[float, float, dict]:
    """Build a runner from ``cfg`` and train.

    Returns:
        (total s, train() s, last validation metrics) where total includes
        building the runner (model, data, hooks).
    """
    from mmengine.runner import Runner

    with quiet_stdout():
        t0 = time.perf_counter()
        runner = Runner.from_cfg(cfg)
        t1 = time.perf_counter()
        runner.train()
        t2 = time.perf_counter()
    metrics = {k: v.current() for k, v in
               runner.message_hub.log_scalars.items() if k.startswith('val/')}
    del runner
    gc.collect()
    return t2 - t0, t2 - t1, metrics


def bench_search(args: argparse.Namespace) -> None:
    """Section 3: a whole demo search vs its result trained from scratch."""
    from atomnas_mm.utils.digits import convert
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
    epochs, subset = args.search_epochs, args.search_subset
    print(f'\n== 3. search: digits demo search vs its searched net trained '
          f'from scratch, {epochs} epochs each'
          f'{f", first {subset} training images" if subset else ""} ==')
    with tempfile.TemporaryDirectory(prefix='bench_shrink_') as tmp:
        data = osp.join(tmp, 'digits')
        convert(data)
        cfg = demo_config(osp.join(tmp, 'search'), data, epochs, subset)
        supernet = ArchSpec.load(cfg.model.backbone.arch.to_dict())
        print(f'load average before the search {os.getloadavg()[0]:.1f}',
              flush=True)
        s_total, s_train, s_metrics = run_training(cfg)
        with open(osp.join(tmp, 'search', 'searched_arch.json')) as f:
            searched = json.load(f)
        shrinks = [n for n in os.listdir(osp.join(tmp, 'search', 'arch'))
                   if n.startswith('iter_')] \
            if osp.isdir(osp.join(tmp, 'search', 'arch')) else []

        cfg = demo_config(osp.join(tmp, 'scratch'), data, epochs, subset)
        cfg.model.backbone.arch = searched
        # Plain wrapper (no penalty), same optimizer and constructor (its
        # weight-decay rule); every hook but the shrink hook stays.
        cfg.optim_wrapper = dict(
            type='OptimWrapper', optimizer=cfg.optim_wrapper.optimizer,
            constructor='atomnas_mm.AtomNASOptimWrapperConstructor')
        cfg.custom_hooks = [h for h in cfg.custom_hooks
                            if not h.type.endswith('DynamicShrinkHook')]
        print(f'load average before from-scratch '
              f'{os.getloadavg()[0]:.1f}', flush=True)
        f_total, f_train, f_metrics = run_training(cfg)
    print(f'load average after {os.getloadavg()[0]:.1f}')

    side = 16  # the demo's input size
    spec = ArchSpec.load(searched)
    print(f'supernet {gmacs(supernet, side) * 1e3:.2f}M MACs at {side}x'
          f'{side} -> searched {gmacs(spec, side) * 1e3:.2f}M '
          f'({len(shrinks)} shrinks)')
    top1 = 'val/accuracy/top1'
    for name, total, train, m in (('search', s_total, s_train, s_metrics),
                                  ('from scratch', f_total, f_train,
                                   f_metrics)):
        acc = f', val top-1 {m[top1]:.1f}%' if top1 in m else ''
        print(f'{name:<13} total {total:6.1f} s (train() {train:6.1f} s)'
              f'{acc}')
    print(f'search / from scratch: total {s_total / f_total:.3f}, train() '
          f'{s_train / f_train:.3f} (paper, AtomNAS-C: 1.172)')


# --------------------------------------------------------------------- main
SECTIONS = {'shrink': bench_shrink, 'curve': bench_curve,
            'search': bench_search}


def parse_args(argv: Sequence[str] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch', type=int, default=16,
                   help='batch of the train steps (sections 1 and 2)')
    p.add_argument('--side', type=int, default=64,
                   help='input side of the train steps (sections 1 and 2)')
    p.add_argument('--optim', choices=('rmsprop_tf', 'sgd'),
                   default='rmsprop_tf',
                   help='optimizer of the train steps (sections 1 and 2)')
    p.add_argument('--search-epochs', type=int, default=16,
                   help='epochs of both trainings of section 3')
    p.add_argument('--search-subset', type=int, default=0,
                   help='section 3 trains on the first N images (0: all)')
    add_common_args(p, SECTIONS, reps=9,
                    quick='smoke test: batch 2 at 32x32, 2 reps; section 3: '
                    '4 epochs on 256 images')
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.side, args.reps, args.warmup = 2, 32, 2, 1
        args.search_epochs, args.search_subset = 4, 256
    return args


def main(argv: Sequence[str] = None) -> None:
    run_sections(parse_args(argv), SECTIONS)


if __name__ == '__main__':
    main()
