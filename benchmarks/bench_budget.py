"""Search to a budget: does it land on the target, do rounded widths run
faster, does the latency table predict, would a divisor-8 search be faster.

Four sections, all in one run:

1. ``demo``: the digits demo searched to 0.8M / 1.0M / 1.4M MACs
   (``configs/atomnas/atomnas_demo_digits_budget.py``, divisor 8) against
   fixed-lambda demo runs (no target, divisor 1) with a sweep of lambdas:
   final MACs vs target and validation top-1; for each target the
   fixed-lambda run that landed nearest.
2. ``speed``: eval time per GMAC (batch 1 and 8, 224, 2 threads) of
   AtomNAS-C as published, rounded up to multiples of 8 and of 16, and the
   supernet, in PyTorch (channels_last) and in onnxruntime (plain
   ``torch.onnx.export`` of the eval net).
3. ``lut``: a latency table of the supernet (and of the stem-16 supernet,
   for AtomNAS-A) measured here, its prediction against the measured
   latency of AtomNAS-A/B/C, C rounded to 8 and 16, and 20 random sub-nets.
4. ``proxy``: the removal of a budget search simulated on the full supernet
   (the hook's own ``plan_removal``, budget cap and forced removal) with
   synthetic importances that make the unconstrained search end exactly at
   AtomNAS-C: run with divisor 1 it finds C, with divisor 8 a net of the
   same MACs with multiple-of-8 widths; both timed in onnxruntime and
   PyTorch. (A real ImageNet search is out of reach here; see
   benchmarks/README.md for what this does and does not show.)

Timings are round-robin (``bench_block.time_round_robin``), ratios are
medians of same-round ratios (``paired_ratio``). Run under the shared CPU
lock on an idle machine::

    flock /tmp/atomnas-cpu.lock .venv/bin/python benchmarks/bench_budget.py
    .venv/bin/python benchmarks/bench_budget.py --quick        # smoke test
    .venv/bin/python benchmarks/bench_budget.py --sections speed lut --reps 9
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import os.path as osp
import random
import statistics
import sys
import tempfile
import time
import warnings
from typing import Dict, List, Sequence, Tuple

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis_tools'))
sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))

from atomnas_mm.engine.search.policy import plan_removal  # noqa: E402
from atomnas_mm.models.arch import (ArchSpec, LatencyTable,  # noqa: E402
                                    build_cost_model, count,
                                    first_not_divisible, load_spec,
                                    round_spec)
from bench_block import (add_common_args, calibrate_bn,  # noqa: E402
                         paired_ratio, run_sections, time_round_robin)
from bench_shrink import quiet_stdout  # noqa: E402
from latency_lut import FullNet, Timer, measure_nets, measure_table  # noqa: E402,E501

NUM_CLASSES = 1000
DEMO_BUDGET = osp.join(ROOT, 'configs', 'atomnas',
                       'atomnas_demo_digits_budget.py')
DEMO = osp.join(ROOT, 'configs', 'atomnas', 'atomnas_demo_digits.py')


def gmacs(spec, side: int, num_classes: int = NUM_CLASSES) -> float:
    return count(spec, side, num_classes).macs / 1e9


def the_nets(args) -> Dict[str, ArchSpec]:
    """Section 2's nets (tiny stand-ins with --quick)."""
    if args.quick:
        sup = load_spec(TINY)
        odd = random_subnet(sup, random.Random(1), aligned=False)
        return {'supernet': sup, 'odd': odd,
                'odd_r8': round_spec(odd, 8, cap=sup)}
    return {'supernet': load_spec('supernet'),
            'atomnas_c': load_spec('atomnas_c'),
            'c_r8': round_spec('atomnas_c', 8, cap='supernet'),
            'c_r16': round_spec('atomnas_c', 16, cap='supernet')}


TINY = dict(  # --quick: tests/conftest.py's tiny spec, divisible by 8
    stem_channels=8, first_block=dict(out_channels=8, kernel_size=3),
    blocks=[
        dict(in_channels=8, out_channels=16, stride=2,
             kernels={'3': 16, '5': 16, '7': 16}),
        dict(in_channels=16, out_channels=16, stride=1,
             kernels={'3': 16, '5': 16, '7': 16}),
        dict(in_channels=16, out_channels=24, stride=2,
             kernels={'3': 24, '5': 24, '7': 24}),
        dict(in_channels=24, out_channels=24, stride=1,
             kernels={'3': 24, '5': 24, '7': 24}),
    ], head_channels=64)


def random_subnet(supernet: ArchSpec, rng: random.Random,
                  aligned: bool = False) -> ArchSpec:
    """A sub-net with a random overall width (15-85% of the supernet's
    atoms per kernel, +-50% per kernel), some kernels dead; every block
    without residual keeps an atom. ``aligned``: multiples of 8."""
    spec = copy.deepcopy(supernet)
    frac = rng.uniform(0.15, 0.85)
    for b, s in zip(spec.blocks, supernet.blocks):
        kernels = {}
        for k, n in s.kernels.items():
            if rng.random() < 0.15:
                continue
            c = int(round(n * frac * rng.uniform(0.5, 1.5)))
            c = max(0, min(n, c))
            if aligned:
                c = min(n, -(-c // 8) * 8)
            if c:
                kernels[k] = c
        if not kernels and not b.has_residual:
            kernels = {min(s.kernels): 8 if aligned else 1}
        b.kernels = kernels
    return spec


# ---------------------------------------------------------------- ORT
def ort_session(spec: ArchSpec, side: int, threads: int, path: str):
    """The eval net (backbone, pool, linear) exported with
    ``torch.onnx.export`` (dynamic batch) and loaded in onnxruntime on the
    CPU with ``threads`` intra-op threads, sequential execution."""
    import onnxruntime as ort
    net = FullNet(spec, NUM_CLASSES, 'contiguous')
    x = torch.randn(2, 3, side, side, generator=torch.Generator(
    ).manual_seed(0))
    calibrate_bn(net, x)  # eval statistics of a real batch (no denormals)
    net.eval()
    with warnings.catch_warnings(), quiet_stdout():
        warnings.simplefilter('ignore')
        torch.onnx.export(net, (x, ), path, input_names=['x'],
                          output_names=['y'], dynamic_axes={'x': {0: 'b'}},
                          opset_version=17, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, opts,
                                providers=['CPUExecutionProvider'])


def time_ort(specs: Dict[str, ArchSpec], side: int, batch: int, args,
             tmp: str) -> Dict[str, List[float]]:
    import numpy as np
    x = np.random.default_rng(0).standard_normal(
        (batch, 3, side, side)).astype(np.float32)
    cands = {}
    for name, spec in specs.items():
        sess = ort_session(spec, side, args.threads,
                           osp.join(tmp, f'{name}.onnx'))
        cands[name] = (lambda s=sess: s.run(None, {'x': x}))
    return time_round_robin(cands, args.reps, args.warmup)


def time_torch(specs: Dict[str, ArchSpec], side: int, batch: int,
               args) -> Dict[str, List[float]]:
    timer = Timer('cpu', batch, 'channels_last', args.reps, args.warmup)
    x = timer.input(3, (side, side))
    cands = {name: timer.prepare(FullNet(s, NUM_CLASSES), x)
             for name, s in specs.items()}
    return time_round_robin(cands, args.reps, args.warmup)


def per_gmac(times: Dict[str, List[float]], specs, side: int,
             batch: int) -> Dict[str, List[float]]:
    return {n: [t / (gmacs(specs[n], side) * batch) for t in ts]
            for n, ts in times.items()}


def speed_table(specs: Dict[str, ArchSpec], side: int, args, ref: str,
                title: str) -> Dict[str, Dict[str, float]]:
    """Time ``specs`` in torch and onnxruntime at batch 1 and 8; print ms,
    ms/GMAC and (ms/GMAC) / (ms/GMAC of ``ref``); return them."""
    print(f'\n{title}')
    results: Dict[str, Dict[str, float]] = {n: {} for n in specs}
    with tempfile.TemporaryDirectory(prefix='bench_budget_') as tmp:
        for runtime in ('torch', 'ort'):
            for batch in args.batches:
                t0 = time.perf_counter()
                times = (time_torch(specs, side, batch, args)
                         if runtime == 'torch' else
                         time_ort(specs, side, batch, args, tmp))
                pg = per_gmac(times, specs, side, batch)
                col = f'{runtime} b{batch}'
                for n in specs:
                    results[n][f'{col} ms'] = statistics.median(times[n])
                    results[n][f'{col} ms/GMAC'] = statistics.median(pg[n])
                    results[n][f'{col} vs {ref}'] = paired_ratio(pg, n, ref)
                print(f'  timed {col} ({time.perf_counter() - t0:.0f} s)',
                      flush=True)
                gc.collect()
    cols = [f'{r} b{b}' for r in ('torch', 'ort') for b in args.batches]
    print(f'{"net":<12}{"MMACs":>9}' + ''.join(
        f'{c + " ms":>13}{"/GMAC":>8}{"x" + ref[:5]:>8}' for c in cols))
    for n, spec in specs.items():
        print(f'{n:<12}{gmacs(spec, side) * 1e3:>9.1f}' + ''.join(
            f'{results[n][c + " ms"]:>13.2f}'
            f'{results[n][c + " ms/GMAC"]:>8.1f}'
            f'{results[n][f"{c} vs {ref}"]:>8.2f}' for c in cols))
    return results


# ---------------------------------------------------------------- 2. speed
def bench_speed(args) -> None:
    specs = the_nets(args)
    speed_table(specs, args.side, args, 'supernet',
                f'== 2. eval time per GMAC, {args.side}x{args.side}, '
                f'{args.threads} threads, torch channels_last / onnxruntime '
                '(xsuper: ms/GMAC over the supernet\'s) ==')


# ---------------------------------------------------------------- 3. lut
def bench_lut(args) -> None:
    side, batch = args.side, args.lut_batch
    print(f'\n== 3. latency table: prediction vs measured, {side}x{side}, '
          f'batch {batch}, {args.threads} threads, torch channels_last, '
          f'{args.statistic} of {args.reps} rounds ==')
    if args.quick:
        supers = {'supernet': load_spec(TINY)}
        named = {}
    else:
        supers = {'supernet': load_spec('supernet'),
                  'supernet_stem16': load_spec('supernet_stem16')}
        named = {'atomnas_a': ('supernet_stem16', load_spec('atomnas_a')),
                 'atomnas_b': ('supernet', load_spec('atomnas_b')),
                 'atomnas_c': ('supernet', load_spec('atomnas_c')),
                 'c_r8': ('supernet', round_spec('atomnas_c', 8)),
                 'c_r16': ('supernet', round_spec('atomnas_c', 16))}
    tables = {}
    for name, spec in supers.items():
        path = osp.join(args.lut_dir, f'lut_{name}_{side}_b{batch}_'
                        f't{args.threads}.json') if args.lut_dir else None
        if path and osp.isfile(path) and not args.remeasure:
            tables[name] = LatencyTable.load(path)
            print(f'  {name}: table {path} (reused; --remeasure to measure '
                  'again)')
            continue
        t0 = time.perf_counter()
        tables[name] = measure_table(
            spec, side, batch, args.lut_step, args.lut_reps, args.warmup,
            num_classes=NUM_CLASSES, progress=False,
            statistic=args.statistic)
        check = tables[name].meta['check']
        print(f'  {name}: measured a table in '
              f'{time.perf_counter() - t0:.0f} s (step {args.lut_step}); '
              f'supernet {check["supernet_ms"]:.2f} ms measured, '
              f'{check["predicted_ms"]:.2f} predicted', flush=True)
        if path:
            os.makedirs(args.lut_dir, exist_ok=True)
            tables[name].dump(path)
            print(f'  written {path}')
    rng = random.Random(0)
    nets = dict(named)
    for i in range(args.random_nets):
        nets[f'random_{i:02d}'] = ('supernet', random_subnet(
            supers['supernet'], rng, aligned=False))
    timer = Timer('cpu', batch, 'channels_last', args.reps, args.warmup,
                  args.statistic)
    measured = measure_nets(timer, {n: s for n, (_, s) in nets.items()},
                            side, NUM_CLASSES)
    errors = {}
    print(f'{"net":<12}{"MMACs":>9}{"measured ms":>13}{"predicted":>11}'
          f'{"error":>9}')
    for n, (table, spec) in nets.items():
        pred = tables[table].predict(spec)
        errors[n] = pred / measured[n] - 1
        print(f'{n:<12}{gmacs(spec, side) * 1e3:>9.1f}{measured[n]:>13.2f}'
              f'{pred:>11.2f}{100 * errors[n]:>+8.1f}%')

    def summary(keys: List[str], label: str) -> None:
        if keys:
            abs_err = [abs(errors[k]) for k in keys]
            print(f'{label}: median |error| '
                  f'{100 * statistics.median(abs_err):.1f}%, max '
                  f'{100 * max(abs_err):.1f}% over {len(keys)} nets')
    summary([k for k in nets if not k.startswith('random')],
            'published and rounded')
    summary([k for k in nets if k.startswith('random')], 'random sub-nets')
    summary(list(nets), 'all')


# ---------------------------------------------------------------- 4. proxy
def simulate_search(supernet: ArchSpec, survivors: ArchSpec, target: float,
                    divisor: int, side: int, steps: int = 40,
                    delta: float = 1e6, seed: int = 0
                    ) -> Tuple[ArchSpec, int]:
    """The removal of a budget search on ``supernet``, with synthetic
    importances: the atoms ``survivors`` keeps (the first n of each kernel)
    never die (importance 1 + U(0, 1)); every other atom dies at a random
    time U(0, 1) of the search and is as important as its time of death.
    At each of ``steps`` checks the dead atoms go through the hook's
    :func:`plan_removal` (divisor, budget cap at ``target``); at the end
    (``target_by``) what is left above the target goes least important
    first, as the hook's forced removal does.

    Returns:
        (the found spec, atoms removed by the forced removal).
    """
    cm = build_cost_model('macs', side, NUM_CLASSES)
    gen = torch.Generator().manual_seed(seed)
    spec = copy.deepcopy(supernet)
    life: Dict[Tuple[int, int], torch.Tensor] = {}
    for i, (b, s) in enumerate(zip(supernet.blocks, survivors.blocks)):
        for k, n in b.kernels.items():
            t = torch.rand(n, generator=gen)
            t[:s.kernels.get(k, 0)] += 1.0
            life[(i, k)] = t

    def apply(plan) -> None:
        for i, kept in plan.keep.items():
            kernels = {}
            for k, idx in kept.items():
                life[(i, k)] = life[(i, k)][idx]
                if len(idx):
                    kernels[k] = len(idx)
                else:
                    del life[(i, k)]
            spec.blocks[i].kernels = kernels

    for step in range(1, steps + 1):
        tau = step / steps
        dead = {key: t < tau for key, t in life.items()}
        plan = plan_removal(spec, dead, life, cm.atom_costs(spec), delta,
                            divisor, cm.total(spec) - target)
        if plan is not None:
            apply(plan)
    forced = 0
    while cm.total(spec) > target:
        every = {key: torch.ones(len(t), dtype=torch.bool)
                 for key, t in life.items()}
        plan = plan_removal(spec, every, life, cm.atom_costs(spec), 0.0,
                            divisor, cm.total(spec) - target)
        if plan is None:
            break
        forced += plan.atoms
        apply(plan)
    return spec, forced


def bench_proxy(args) -> None:
    side = args.side
    if args.quick:
        supernet = load_spec(TINY)
        survivors = random_subnet(supernet, random.Random(3))
    else:
        supernet, survivors = load_spec('supernet'), load_spec('atomnas_c')
    target = count(survivors, side, NUM_CLASSES).macs
    print(f'\n== 4. proxy: a budget search\'s removal simulated on the '
          f'supernet to {target / 1e6:.2f}M MACs (the survivors\' MACs), '
          'divisor 1 vs 8 ==')
    found = {}
    for d in (1, 8):
        spec, forced = simulate_search(supernet, survivors, target, d, side,
                                       steps=10 if args.quick else 40)
        found[f'divisor{d}'] = spec
        macs = count(spec, side, NUM_CLASSES).macs
        print(f'  divisor {d}: {macs:,} MACs ({100 * (macs / target - 1):+.2f}'
              f'% vs target), {spec.num_atoms} atoms, {forced} removed by '
              f'the forced removal, divisible by 8: '
              f'{first_not_divisible(spec, 8) is None}, equal to the '
              f'survivors: {spec == survivors}')
    results = speed_table(found, side, args, 'divisor1',
                          '(xdivis: ms/GMAC over divisor 1\'s)')
    for col in [f'{r} b{b}' for r in ('torch', 'ort') for b in args.batches]:
        r = results['divisor1'][f'{col} ms'] / results['divisor8'][f'{col} ms']
        print(f'{col}: divisor-1 net time / divisor-8 net time {r:.2f}')
    if not args.quick:
        print('  divisor-8 spec: ' + json.dumps(
            [b.kernels for b in found['divisor8'].blocks]))


# ---------------------------------------------------------------- 1. demo
def demo_run(config: str, work_dir: str, data_root: str, args,
             **penalty) -> Dict[str, float]:
    """One demo search; returns final MACs, top-1 and seconds."""
    from bench_shrink import run_training
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    cfg.work_dir = work_dir
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = data_root
    if args.demo_subset:
        cfg.train_dataloader.dataset.indices = args.demo_subset
    epochs = args.demo_epochs
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_interval = min(cfg.train_cfg.val_interval, epochs)
    cfg.param_scheduler[-1].end = epochs
    if epochs < 4:
        cfg.param_scheduler = cfg.param_scheduler[-1:]
        cfg.param_scheduler[0].begin = 0
        cfg.optim_wrapper.penalty.ramp_epochs = 0
    cfg.log_level = 'WARNING'
    for key, value in penalty.items():
        cfg.optim_wrapper.penalty[key] = value
    for hook in cfg.custom_hooks:
        if hook.type.endswith('BNRecalibrationHook'):
            hook.progress = False
    total, _, metrics = run_training(cfg)
    spec = load_spec(osp.join(work_dir, 'searched_arch.json'))
    return dict(macs=count(spec, 16, 10).macs,
                top1=metrics.get('val/accuracy/top1', float('nan')),
                seconds=total,
                divisible=first_not_divisible(spec, 8) is None)


def bench_demo(args) -> None:
    from digits_to_folder import convert
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
    print(f'\n== 1. demo: digits searched to a MACs target (divisor 8) vs '
          f'fixed lambda, {args.demo_epochs} epochs each ==')
    with tempfile.TemporaryDirectory(prefix='bench_budget_demo_') as tmp:
        data = osp.join(tmp, 'digits')
        convert(data)
        budget = {}
        for t in args.targets:
            r = demo_run(DEMO_BUDGET, osp.join(tmp, f'target_{t}'), data,
                         args, target=dict(macs=t * 1e6))
            budget[t] = r
            print(f'  target {t:.2f}M: {r["macs"] / 1e6:.4f}M '
                  f'({100 * (r["macs"] / (t * 1e6) - 1):+.2f}%), top-1 '
                  f'{r["top1"]:.2f}%, divisible by 8 {r["divisible"]}, '
                  f'{r["seconds"]:.0f} s', flush=True)
        fixed = {}
        for lam in args.lambdas:
            r = demo_run(DEMO, osp.join(tmp, f'lambda_{lam:g}'), data, args,
                         weight=lam)
            fixed[lam] = r
            print(f'  lambda {lam:g}: {r["macs"] / 1e6:.4f}M, top-1 '
                  f'{r["top1"]:.2f}%, {r["seconds"]:.0f} s', flush=True)
    print(f'{"target":>8}{"budget MACs":>13}{"vs target":>11}{"top-1":>8}'
          f'{"| nearest lambda":>17}{"MACs":>10}{"vs target":>11}'
          f'{"top-1":>8}')
    for t, r in budget.items():
        lam, f = min(fixed.items(),
                     key=lambda kv: abs(kv[1]['macs'] - t * 1e6))
        print(f'{t:>7.2f}M{r["macs"] / 1e6:>12.4f}M'
              f'{100 * (r["macs"] / (t * 1e6) - 1):>+10.2f}%'
              f'{r["top1"]:>8.2f}{lam:>17g}{f["macs"] / 1e6:>9.4f}M'
              f'{100 * (f["macs"] / (t * 1e6) - 1):>+10.2f}%'
              f'{f["top1"]:>8.2f}')


# ---------------------------------------------------------------- main
SECTIONS = {'demo': bench_demo, 'speed': bench_speed, 'lut': bench_lut,
            'proxy': bench_proxy}


def parse_args(argv: Sequence[str] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--side', type=int, default=224)
    p.add_argument('--batches', type=int, nargs='+', default=[1, 8])
    p.add_argument('--lut-batch', type=int, default=1)
    p.add_argument('--lut-step', type=int, default=8)
    p.add_argument('--lut-reps', type=int, default=7)
    p.add_argument('--lut-dir', default=None, help='keep (and reuse) the '
                   'measured tables here')
    p.add_argument('--remeasure', action='store_true',
                   help='measure tables even when --lut-dir has them')
    p.add_argument('--statistic', default='min', choices=('min', 'median'),
                   help='section 3: what a grid point and a net keep of '
                   'their rounds (min: the least disturbed by other '
                   'processes on a shared machine)')
    p.add_argument('--random-nets', type=int, default=20)
    p.add_argument('--targets', type=float, nargs='+',
                   default=[0.8, 1.0, 1.4], help='demo targets, M MACs')
    p.add_argument('--lambdas', type=float, nargs='+',
                   default=[1e-3, 1.5e-3, 2e-3, 3e-3, 4.5e-3, 7e-3],
                   help='fixed lambdas of the demo comparison')
    p.add_argument('--demo-epochs', type=int, default=16)
    p.add_argument('--demo-subset', type=int, default=0)
    add_common_args(p, SECTIONS, reps=9,
                    quick='smoke test: tiny nets at 32x32, 1-epoch demo')
    args = p.parse_args(argv)
    if args.quick:
        args.side, args.batches, args.reps, args.warmup = 32, [1, 2], 2, 1
        args.lut_step, args.lut_reps, args.random_nets = 16, 1, 3
        args.targets, args.lambdas = [1.4], [2e-3]
        args.demo_epochs, args.demo_subset = 1, 128
    return args


def main(argv: Sequence[str] = None) -> None:
    run_sections(parse_args(argv), SECTIONS)


if __name__ == '__main__':
    main()
