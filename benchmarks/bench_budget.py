"""Search to a budget: does it keep the net alive, does it match a
well-chosen fixed lambda, do rounded widths run faster, does the latency
table predict, would a divisor-8 search be faster.

Five sections, all in one run:

1. ``collapse``: the digits budget demo (``configs/atomnas/
   atomnas_demo_digits_budget.py``, 1.0M MACs, divisor 8) as shipped, with
   gradient accumulation 4, with accumulation 4 and ``--auto-scale-lr`` on
   3/4 of the epochs, to 0.7M with divisor 16, on 2 CPU processes, and on
   the hard digits (30 images per class, 20% wrong labels, 300 steps),
   next to the plain fixed-lambda demo: the lowest validation top-1 after
   the first, the final one, and the searched spec retrained from scratch.
   Runs are kept in ``--work-dir``/results.json (``--resume``).
1b. ``seeds``: the budget demo at 0.6 / 0.8 / 1.0 / 1.4M MACs against a
   sweep of fixed lambdas (no target, divisor 1), ``--seeds`` each: for
   each target, the budget's mean +- std against the best fixed lambda
   whose runs land within 10% of the target, and whether the budget trails
   it by more than 2 standard errors of the difference.
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

Timings are round-robin (:func:`atomnas_mm.utils.timing.time_round_robin`),
ratios are medians of same-round ratios (``paired_ratio``). Run under the shared CPU
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

from atomnas_mm.engine.search.policy import plan_removal
from atomnas_mm.models.arch import (ArchSpec, LatencyTable, build_cost_model,
                                    count, first_not_divisible, load_spec,
                                    round_spec)
from atomnas_mm.utils.io import dump_json_atomic
from atomnas_mm.utils.latency import FullNet, measure_nets, measure_table
from atomnas_mm.utils.timing import (Timer, add_common_args, calibrate_bn,
                                     paired_ratio, run_sections,
                                     time_round_robin)
# A sibling script (this folder is on sys.path when one runs as a script).
from bench_shrink import quiet_stdout

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The digits runs import tools/dataset_converters/digits_to_folder.py.
sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))

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


# --quick: the shipped tiny spec (the tests' too), rounded up to multiples
# of 8 so that divisor-8 sub-nets fit under it.
TINY = round_spec('tiny', 8)


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


# ---------------------------------------------------------------- 1. runs
def digits_run(name: str, work_dir: str, data_root: str, base: str,
               options: dict, seed: int = 0, auto_scale: bool = False,
               procs: int = 1, args=None) -> dict:
    """One run of a digits config with validation after every epoch:
    the top-1 of each validation, the final net's MACs and spec. With
    ``procs`` > 1, ``tools/dist_train.sh`` on the CPU (gloo)."""
    from mmengine.config import Config
    options = dict(options)
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options.setdefault(f'{split}.dataset.data_root', data_root)
    options.update({'train_cfg.val_interval': 1, 'randomness.seed': seed,
                    'default_hooks.logger.interval': 1000,
                    'default_hooks.checkpoint.interval': 1000,
                    'log_level': 'WARNING'})
    if args is not None and args.demo_subset:
        options['train_dataloader.dataset.indices'] = args.demo_subset
    if args is not None and args.quick:
        options['optim_wrapper.penalty.ramp_epochs'] = 0
    t0 = time.perf_counter()
    if procs > 1:
        import subprocess
        cmd = ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), base,
               str(procs), '--work-dir', work_dir] + \
            (['--auto-scale-lr'] if auto_scale else []) + \
            ['--cfg-options'] + [f'{k}={v}' for k, v in options.items()]
        env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1',
                   PORT=str(29500 + seed))
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True,
                              text=True)
        if proc.returncode:
            raise RuntimeError(f'{name}: {proc.stderr[-2000:]}')
        tops = _val_tops(work_dir)
    else:
        from mmengine.hooks import Hook
        from mmengine.runner import Runner

        from atomnas_mm.engine.batch_scaling import scale_to_batch
        cfg = Config.fromfile(base)
        cfg.work_dir = work_dir
        cfg.merge_from_dict(options)
        if auto_scale:
            cfg.auto_scale_lr.enable = True
            scale_to_batch(cfg, 1)
        tops = []

        class _Tops(Hook):
            priority = 'VERY_LOW'

            def after_val_epoch(self, runner, metrics=None):
                tops.append(float(metrics['accuracy/top1']))

        with quiet_stdout():
            runner = Runner.from_cfg(cfg)
            runner.register_hook(_Tops())
            runner.train()
    spec = load_spec(osp.join(work_dir, 'searched_arch.json')) \
        if osp.isfile(osp.join(work_dir, 'searched_arch.json')) else None
    return dict(name=name, seed=seed, tops=tops, final=tops[-1],
                lowest=min(tops[1:]) if len(tops) > 1 else tops[-1],
                macs=count(spec, 16, 10).macs if spec else None,
                spec=spec.to_dict() if spec else None,
                seconds=time.perf_counter() - t0)


def _val_tops(work_dir: str) -> List[float]:
    """The validation top-1 of every epoch, from mmengine's scalars.json."""
    import glob
    path = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json')))[-1]
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [float(r['accuracy/top1']) for r in rows if 'accuracy/top1' in r]


def retrain_options(spec_path: str) -> dict:
    """The searched spec from scratch: the demo config without the penalty
    (weight 0) and without removals."""
    return {'model.backbone.arch': spec_path,
            'optim_wrapper.penalty.weight': 0.0,
            'custom_hooks.0.delta': 1e30,
            'custom_hooks.0.final_removal': False}


def hard_digits_options(data_root: str, epochs: int = 30) -> dict:
    """The earlier ablation study's task: 30 images per class, a fifth of
    them under a wrong label, random resized crops (0.4-1) and rotations,
    batch 32 for 300 steps."""
    return {
        'train_dataloader.dataset.data_root': data_root,
        'train_dataloader.batch_size': 32,
        'train_dataloader.dataset.pipeline': [
            dict(type='LoadImageFromFile'),
            dict(type='RandomResizedCrop', scale=16,
                 crop_ratio_range=(0.4, 1.0), backend='pillow',
                 interpolation='bicubic'),
            dict(type='Rotate', angle=20.0, prob=0.5, pad_val=0,
                 interpolation='bilinear'),
            dict(type='PackInputs')],
        'train_cfg.max_epochs': epochs, 'param_scheduler.1.end': epochs}


class Results:
    """Runs kept in ``<work-dir>/results.json`` (``--resume`` skips what is
    there)."""

    def __init__(self, args) -> None:
        self.path = osp.join(args.work_dir, 'results.json')
        os.makedirs(args.work_dir, exist_ok=True)
        self.rows = json.load(open(self.path)) if args.resume and \
            osp.isfile(self.path) else []

    def get(self, key: str, make) -> dict:
        for r in self.rows:
            if r.get('key') == key:
                return r
        r = make()
        r['key'] = key
        self.rows.append(r)
        dump_json_atomic(self.rows, self.path)
        return r


def _data(args) -> Tuple[str, str]:
    from digits_to_folder import convert
    clean = osp.join(args.work_dir, 'digits')
    hard = osp.join(args.work_dir, 'digits_hard')
    convert(clean)
    convert(hard, 0, 30, 0.2)
    return clean, hard


def bench_collapse(args) -> None:
    """Does the budget search keep the net alive? The runs of the table in
    benchmarks/README.md: the lowest validation after the first and the
    final one, against the searched spec retrained from scratch."""
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
    res = Results(args)
    clean, hard = _data(args)
    e = args.demo_epochs
    runs = [
        ('as shipped', DEMO_BUDGET, {}, False, 1),
        ('accumulative_counts=4', DEMO_BUDGET,
         {'optim_wrapper.accumulative_counts': 4}, False, 1),
        ('accumulation 4, --auto-scale-lr, 3/4 of the epochs', DEMO_BUDGET,
         {'optim_wrapper.accumulative_counts': 4,
          'train_cfg.max_epochs': max(1, e * 3 // 4),
          'param_scheduler.1.end': max(1, e * 3 // 4)}, True, 1),
        ('target 0.7M, channel_divisor=16', DEMO_BUDGET,
         {'optim_wrapper.penalty.target': dict(macs=0.7e6),
          'custom_hooks.0.channel_divisor': 16}, False, 1),
        ('2 processes (gloo), --auto-scale-lr', DEMO_BUDGET, {}, True, 2),
        ('hard digits, 300 steps', DEMO_BUDGET,
         hard_digits_options(hard, max(2, e * 30 // 16)), False, 1),
        ('fixed lambda (the plain demo)', DEMO, {}, False, 1),
    ]
    print(f'\n== 1. collapse: the budget search\'s validations, {e} epochs '
          '(lowest after the first, final) and its spec retrained ==')
    print(f'{"run":<52}{"lowest":>8}{"final":>8}{"MACs":>9}'
          f'{"retrained":>11}{"final - retrained":>19}')
    if args.quick:
        runs = [runs[0], runs[-1]]
    for name, base, options, auto, procs in runs:
        opts = {'train_cfg.max_epochs': e, 'param_scheduler.1.end': e}
        opts.update(options)
        work = osp.join(args.work_dir, 'collapse', name.split(',')[0]
                        .replace(' ', '_').replace('=', ''))
        r = res.get(f'collapse/{name}', lambda: digits_run(
            name, work, clean, base, opts, auto_scale=auto, procs=procs,
            args=args))
        spec_path = osp.join(work, 'searched_arch.json')
        # The same recipe (schedule, accumulation, processes), no search.
        again = dict(opts, **retrain_options(spec_path))
        again.pop('optim_wrapper.penalty.target', None)
        scratch = res.get(f'retrain/{name}', lambda: digits_run(
            name + ' (retrained)', work + '_retrain', clean, DEMO, again,
            auto_scale=auto, procs=procs, args=args))
        print(f'{name:<52}{r["lowest"]:>8.2f}{r["final"]:>8.2f}'
              f'{r["macs"] / 1e6:>8.3f}M{scratch["final"]:>11.2f}'
              f'{r["final"] - scratch["final"]:>+19.2f}', flush=True)


def bench_seeds(args) -> None:
    """The budget search against the fixed lambdas that land near the same
    size, over seeds: mean +- std of the final top-1, and whether the
    budget trails the best of them by more than 2 standard errors."""
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
    res = Results(args)
    clean, _ = _data(args)
    e = args.demo_epochs
    base = {'train_cfg.max_epochs': e, 'param_scheduler.1.end': e}
    print(f'\n== 2. seeds: budget vs fixed lambda on the digits demo, {e} '
          f'epochs, {args.seeds} seeds ==')
    budget, fixed = {}, {}
    for seed in range(args.seeds):
        for t in args.targets:
            budget.setdefault(t, []).append(res.get(
                f'budget/{t}/{seed}', lambda: digits_run(
                    f'target {t}M', osp.join(args.work_dir, 'seeds',
                                             f'target{t}_s{seed}'),
                    clean, DEMO_BUDGET, dict(base, **{
                        'optim_wrapper.penalty.target': dict(macs=t * 1e6)}),
                    seed=seed, args=args)))
        for lam in args.lambdas:
            fixed.setdefault(lam, []).append(res.get(
                f'fixed/{lam}/{seed}', lambda: digits_run(
                    f'lambda {lam:g}', osp.join(args.work_dir, 'seeds',
                                                f'lambda{lam:g}_s{seed}'),
                    clean, DEMO, dict(base, **{
                        'optim_wrapper.penalty.weight': lam}),
                    seed=seed, args=args)))
        print(f'  seed {seed} done', flush=True)

    def ms(xs):
        return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 \
            else 0.0

    print(f'{"target":>8}{"budget top-1":>16}{"MACs":>9}'
          f'{"| best fixed lambda within 10%":>31}{"top-1":>16}{"runs":>6}'
          f'{"diff":>8}{"2 SE":>7}  verdict')
    for t, rs in budget.items():
        b = ms([r['final'] for r in rs])
        near = {lam: [r for r in fs if abs(r['macs'] / (t * 1e6) - 1) <= 0.1]
                for lam, fs in fixed.items()}
        near = {lam: fs for lam, fs in near.items() if fs}
        if not near:
            print(f'{t:>7.2f}M{b[0]:>9.2f} ± {b[1]:<4.2f}  no fixed lambda '
                  'landed within 10%')
            continue
        lam, fs = max(near.items(), key=lambda kv: statistics.mean(
            r['final'] for r in kv[1]))
        f = ms([r['final'] for r in fs])
        se = (b[1] ** 2 / len(rs) + f[1] ** 2 / len(fs)) ** 0.5
        diff = b[0] - f[0]
        verdict = 'no worse' if diff >= -2 * se else 'worse'
        print(f'{t:>7.2f}M{b[0]:>9.2f} ± {b[1]:<4.2f}'
              f'{statistics.mean(r["macs"] for r in rs) / 1e6:>8.3f}M'
              f'{lam:>31g}{f[0]:>9.2f} ± {f[1]:<4.2f}{len(fs):>6}'
              f'{diff:>+8.2f}{2 * se:>7.2f}  {verdict}', flush=True)
    print('  fixed lambdas: ' + '; '.join(
        f'{lam:g}: {statistics.mean(r["macs"] for r in fs) / 1e6:.3f}M, '
        f'{statistics.mean(r["final"] for r in fs):.2f}%'
        for lam, fs in fixed.items()))


# ---------------------------------------------------------------- main
SECTIONS = {'collapse': bench_collapse, 'seeds': bench_seeds,
            'speed': bench_speed, 'lut': bench_lut, 'proxy': bench_proxy}


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
                   default=[0.6, 0.8, 1.0, 1.4], help='demo targets, M MACs')
    p.add_argument('--lambdas', type=float, nargs='+',
                   default=[1.2e-3, 1.6e-3, 2.5e-3, 3.6e-3, 5.5e-3],
                   help='fixed lambdas of the demo comparison (the '
                   'defaults land within 10%% of 1.4/1.4/1.0/0.8/0.6M)')
    p.add_argument('--seeds', type=int, default=5)
    p.add_argument('--demo-epochs', type=int, default=16)
    p.add_argument('--demo-subset', type=int, default=0)
    p.add_argument('--work-dir', default='work_dirs/bench_budget',
                   help='runs and results.json of the collapse and seeds '
                   'sections')
    p.add_argument('--resume', action='store_true',
                   help='keep the runs results.json already has')
    add_common_args(p, SECTIONS, reps=9,
                    quick='smoke test: tiny nets at 32x32, 1-epoch demo')
    args = p.parse_args(argv)
    if args.quick:
        args.side, args.batches, args.reps, args.warmup = 32, [1, 2], 2, 1
        args.lut_step, args.lut_reps, args.random_nets = 16, 1, 3
        args.targets, args.lambdas, args.seeds = [1.4], [2e-3], 2
        args.demo_epochs, args.demo_subset = 2, 128
    return args


def main(argv: Sequence[str] = None) -> None:
    run_sections(parse_args(argv), SECTIONS)


if __name__ == '__main__':
    main()
