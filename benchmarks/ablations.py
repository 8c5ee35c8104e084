"""The paper's comparisons in miniature, on a test bed where architecture
matters, with seeds.

At each MACs target, every method trains for the same steps on the same
data, and each point is repeated over seeds:

* ``flops``: the paper's search, the resource-aware penalty at a fixed
  lambda that lands near the target (found once per target on seed 0, by
  a few runs in log lambda);
* ``budget``: the same penalty searched to the target (``penalty.target``);
* ``equal``: every atom penalised equally (the paper's Table 2 baseline),
  searched to the same target so that the MACs match;
* ``uniform``: the supernet thinned uniformly to the target, from scratch;
* ``mbv2``: a MobileNetV2-style net, one 3x3 kernel per block, its
  expansion scaled to the target, from scratch;
* ``random``: atoms of the supernet removed at random to the target, from
  scratch;
* ``retrain``: the spec ``flops`` found, trained from scratch (one pass of
  search and training against retraining its result).

Every searched net is also evaluated without BN recalibration (the
paper's Table 3): its EMA weights with the training net's statistics.

The task: ``configs/atomnas/atomnas_testbed.py`` (a generated data set,
``tools/dataset_converters/make_testbed.py``, where wider nets and larger
kernels score higher; ``benchmarks/testbed_check.py`` checks that). Any
config of the same form can be given (``--config``; the tests use the
digits demo).

Writes to ``--work-dir``: ``results.json`` (every run; ``--resume`` keeps
them), ``table.md`` (mean ± std per method and target, and each method's
paired difference to ``flops`` with its standard error), ``pareto.png``
(top-1 against MACs with error bars) and ``removed.png`` (where each
penalty removed atoms, per block and kernel, as the paper's Fig. 6).

    .venv/bin/python benchmarks/ablations.py                # the study
    .venv/bin/python benchmarks/ablations.py --quick        # a smoke run
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import math
import os
import os.path as osp
import statistics
import time
from typing import Dict, List, Optional

import torch

import atomnas_mm  # noqa: F401
from atomnas_mm.models.arch import ArchSpec, count, load_spec
from atomnas_mm.utils.io import dump_json_atomic

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'atomnas', 'atomnas_testbed.py')
METHODS = ('flops', 'budget', 'equal', 'uniform', 'mbv2', 'random',
           'retrain')
SEARCHED = ('flops', 'budget', 'equal')


class Study:
    """What every run shares: the config, its supernet, input size and
    classes."""

    def __init__(self, config: str) -> None:
        from mmengine.config import Config
        self.config = config
        cfg = Config.fromfile(config)
        self.supernet = load_spec(cfg.model.backbone.arch.to_dict()
                                  if hasattr(cfg.model.backbone.arch,
                                             'to_dict')
                                  else cfg.model.backbone.arch)
        self.side = cfg.optim_wrapper.penalty.input_size
        self.classes = cfg.model.head.num_classes

    def macs(self, spec) -> int:
        return count(spec, self.side, self.classes).macs


# ------------------------------------------------------------ the nets
def _fit(make, macs, target: float, hi: float = 1.0):
    """The largest factor f in (0, hi] whose net ``make(f)`` is within the
    target (bisection)."""
    lo = 0.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if macs(make(mid)) <= target else (lo, mid)
    return make(lo)


def thinned_spec(supernet: ArchSpec, factor: float) -> ArchSpec:
    """Every kernel of every block keeps ``int(atoms x factor)`` atoms (at
    least one per block without residual, so the net stays connected)."""
    spec = copy.deepcopy(supernet)
    for b in spec.blocks:
        kept = {k: int(n * factor) for k, n in b.kernels.items()}
        if not any(kept.values()) and not b.has_residual:
            kept[min(b.kernels)] = 1
        b.kernels = {k: n for k, n in kept.items() if n}
    return spec


def uniform_spec(study: Study, target: float) -> ArchSpec:
    """The supernet thinned uniformly (:func:`thinned_spec`) by the largest
    factor within the target."""
    return _fit(lambda f: thinned_spec(study.supernet, f), study.macs,
                target)


def mbv2_spec(study: Study, target: float) -> ArchSpec:
    """A MobileNetV2-style net: every block one 3x3 kernel whose expansion
    (a multiple of the supernet's 3x3 atoms, up to 3x) fills the target."""
    def scaled(f: float) -> ArchSpec:
        spec = copy.deepcopy(study.supernet)
        for b, sup in zip(spec.blocks, study.supernet.blocks):
            b.kernels = {3: max(1, int(f * max(sup.kernels.values())))}
        return spec

    return _fit(scaled, study.macs, target, hi=3.0)


def random_spec(study: Study, target: float, seed: int) -> ArchSpec:
    """Atoms removed one by one, uniformly at random among all remaining,
    until the net is within the target (a block without residual keeps
    one)."""
    g = torch.Generator().manual_seed(seed)
    spec = copy.deepcopy(study.supernet)
    atoms = [(i, k) for i, b in enumerate(spec.blocks)
             for k, n in b.kernels.items() for _ in range(n)]
    costs = count(spec, study.side, study.classes).blocks
    total = study.macs(spec)
    for j in torch.randperm(len(atoms), generator=g).tolist():
        if total <= target:
            break
        i, k = atoms[j]
        b = spec.blocks[i]
        if not b.has_residual and b.num_atoms == 1:
            continue
        b.kernels[k] -= 1
        total -= costs[i].atom_macs[k]
        if not b.kernels[k]:
            del b.kernels[k]
    return load_spec(spec.to_dict())  # validated


# ------------------------------------------------------------ configs
def base_cfg(study: Study, work_dir: str, seed: int, arch, args):
    """The study's config: seed, work dir, quiet logging, one validation
    and one checkpoint at the end."""
    from mmengine.config import Config
    cfg = Config.fromfile(study.config)
    cfg.work_dir = work_dir
    cfg.experiment_name = osp.basename(work_dir)
    cfg.randomness = dict(seed=seed)
    cfg.log_level = 'WARNING'
    cfg.model.backbone.arch = arch
    epochs = cfg.train_cfg.max_epochs if args.epochs is None else args.epochs
    if args.epochs is not None:
        # A shorter run keeps the penalty's ramp in proportion (a budget's
        # target_by must come after it); the lr schedule is cut at the end.
        penalty = cfg.optim_wrapper.get('penalty', {})
        if 'ramp_epochs' in penalty:
            penalty.ramp_epochs = (penalty.ramp_epochs * epochs
                                   / cfg.train_cfg.max_epochs)
        cfg.train_cfg.max_epochs = epochs
        for sched in cfg.param_scheduler:
            if sched.get('end', 0) > epochs:
                sched.end = epochs
    cfg.train_cfg.val_interval = epochs
    cfg.default_hooks.logger.interval = 1000
    cfg.default_hooks.checkpoint = dict(type='atomnas_mm.CheckpointHook',
                                        interval=epochs, save_last=False)
    if args.subset:
        cfg.train_dataloader.dataset.indices = args.subset
    if args.data_root:
        for split in ('train_dataloader', 'val_dataloader',
                      'test_dataloader'):
            cfg[split].dataset.data_root = args.data_root
    for hook in cfg.custom_hooks:
        if hook.type.endswith('BNRecalibrationHook'):
            hook.progress = False
    return cfg


def search_cfg(cfg, method: str, study: Study, target: float,
               lam: Optional[float] = None):
    """The search of ``method``: ``flops`` at lambda ``lam`` without a
    target; ``budget`` and ``equal`` to ``target`` MACs."""
    penalty = dict(cfg.optim_wrapper.penalty)
    penalty.update(input_size=study.side, num_classes=study.classes)
    if method == 'flops':
        penalty.update(weight=lam, cost='macs', target=None)
    else:
        penalty.update(cost='macs' if method == 'budget' else 'equal',
                       target=dict(macs=float(target)))
    cfg.optim_wrapper.penalty = penalty
    return cfg


def scratch_cfg(cfg):
    """Training without search: no penalty, no shrinking; EMA and BN
    recalibration as in the search."""
    cfg.optim_wrapper = dict(
        type='OptimWrapper', optimizer=cfg.optim_wrapper.optimizer,
        constructor='atomnas_mm.AtomNASOptimWrapperConstructor')
    cfg.custom_hooks = [h for h in cfg.custom_hooks
                        if 'DynamicShrinkHook' not in h['type']]
    return cfg


# ------------------------------------------------------------ one run
@contextlib.contextmanager
def quiet():
    """mmengine prints progress bars and logs: keep the study's own output
    readable."""
    logging.getLogger('mmengine').setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        yield


def train_and_eval(cfg, study: Study, searched: bool) -> dict:
    """Train, then evaluate the EMA weights with BN recalibration (and, for
    a searched net, without: the training net's statistics)."""
    from mmengine.runner import Runner

    from atomnas_mm.engine import BNRecalibrationHook
    from atomnas_mm.engine.utils import find_backbone, find_hook
    t0 = time.perf_counter()
    result = {}
    with quiet():
        runner = Runner.from_cfg(cfg)
        recal = find_hook(runner, BNRecalibrationHook)
        # Recalibration overwrites the BN statistics it evaluates with, so
        # the evaluation without it comes first: training's own validation
        # (at its end) runs without recalibration too.
        if recal is None:
            raise SystemExit(f'{cfg.filename}: the study needs a '
                             'BNRecalibrationHook in custom_hooks')
        recal.enabled = not searched
        runner.train()
        if searched:
            result['top1_no_recal'] = float(
                runner.val_loop.run()['accuracy/top1'])
            recal.enabled = True
        result['top1'] = float(runner.val_loop.run()['accuracy/top1'])
    spec = find_backbone(runner.model).arch_spec
    result.update(macs=study.macs(spec), spec=spec.to_dict(),
                  seconds=time.perf_counter() - t0)
    return result


# ------------------------------------------------------------ the study
class Results:
    """Runs kept in ``results.json``, found by their key."""

    def __init__(self, path: str, resume: bool) -> None:
        self.path = path
        self.rows = json.load(open(path)) if resume and osp.isfile(path) \
            else []

    def find(self, **key) -> Optional[dict]:
        return next((r for r in self.rows
                     if all(r.get(k) == v for k, v in key.items())), None)

    def add(self, row: dict) -> dict:
        self.rows.append(row)
        dump_json_atomic(self.rows, self.path)
        return row


def calibrate(study: Study, target: float, res: Results, args) -> float:
    """The lambda whose ``flops`` search lands within ``args.tolerance`` of
    the target on seed 0: a few runs, each correcting log lambda by the
    log of the MACs it missed by (MACs fall roughly as a power of
    lambda)."""
    lam, slope = args.weight, 1.5
    tried = []
    for step in range(args.calibration_runs):
        row = res.find(method='calibrate', target=target, lam=lam)
        if row is None:
            work = osp.join(args.work_dir, 'runs',
                            f'calibrate_{int(target)}_{lam:.3g}')
            row = train_and_eval(search_cfg(base_cfg(
                study, work, 0, study.supernet.to_dict(), args), 'flops',
                study, target, lam), study, True)
            row.update(method='calibrate', target=target, lam=lam)
            res.add(row)
            print(f'  calibrating {target / 1e6:.2f}M: lambda {lam:.3g} -> '
                  f'{row["macs"] / 1e6:.3f}M', flush=True)
        tried.append((lam, row['macs']))
        miss = math.log(row['macs'] / target)
        if abs(miss) <= math.log(1 + args.tolerance):
            break
        if len(tried) > 1:  # the slope of log MACs in log lambda, measured
            (l0, m0), (l1, m1) = tried[-2:]
            if l1 != l0 and m1 != m0:
                slope = max(0.2, -math.log(m1 / m0) / math.log(l1 / l0))
        lam = lam * math.exp(miss / slope)
    return min(tried, key=lambda t: abs(math.log(t[1] / target)))[0]


def run(args) -> List[dict]:
    study = Study(args.config)
    print(f'config {osp.relpath(study.config, ROOT)}: supernet '
          f'{study.macs(study.supernet):,} MACs at {study.side}x{study.side}'
          f', {study.classes} classes; targets {args.targets}, seeds '
          f'{args.seeds}', flush=True)
    res = Results(osp.join(args.work_dir, 'results.json'), args.resume)
    for target in args.targets:
        lam = calibrate(study, target, res, args) \
            if 'flops' in args.methods else None
        for seed in range(args.seeds):
            searched_spec = None
            for method in args.methods:
                key = dict(target=target, seed=seed, method=method)
                row = res.find(**key)
                if row is None:
                    row = _one(study, method, target, seed, lam,
                               searched_spec, args, res)
                    if row is None:
                        continue
                    row.update(key, lam=lam if method == 'flops' else None)
                    res.add(row)
                    print(f'  target {target / 1e6:.2f}M seed {seed} '
                          f'{method:8s} top-1 {row["top1"]:6.2f}'
                          + (f' (no recal {row["top1_no_recal"]:6.2f})'
                             if 'top1_no_recal' in row else '')
                          + f'  {row["macs"] / 1e6:.3f}M MACs  '
                          f'{row["seconds"]:.0f} s', flush=True)
                if method == 'flops':
                    searched_spec = row['spec']
    return [r for r in res.rows if r['method'] != 'calibrate']


def _one(study, method, target, seed, lam, searched_spec, args, res):
    work = osp.join(args.work_dir, 'runs', f'{method}_{int(target)}_s{seed}')
    calibrated = res.find(method='calibrate', target=target, lam=lam)
    if method == 'flops' and seed == 0 and calibrated is not None:
        # Calibration ran this very run (seed 0 at this lambda).
        return {k: v for k, v in calibrated.items()
                if k not in ('method', 'target', 'lam')}
    if method in SEARCHED:
        cfg = search_cfg(base_cfg(study, work, seed,
                                  study.supernet.to_dict(), args), method,
                         study, target, lam)
        return train_and_eval(cfg, study, True)
    if method == 'retrain':
        if searched_spec is None:
            return None
        spec = load_spec(searched_spec)
    else:
        spec = dict(uniform=lambda: uniform_spec(study, target),
                    mbv2=lambda: mbv2_spec(study, target),
                    random=lambda: random_spec(study, target, seed))[
                        method]()
    cfg = scratch_cfg(base_cfg(study, work, seed, spec.to_dict(), args))
    return train_and_eval(cfg, study, False)


# ------------------------------------------------------------ reporting
def _ms(values: List[float]):
    return (statistics.mean(values),
            statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(rows: List[dict]) -> Dict:
    """(target, method) -> mean/std of top-1, top-1 without recalibration
    and MACs over seeds, and the paired difference to ``flops``."""
    groups: Dict = {}
    for r in rows:
        groups.setdefault((r['target'], r['method']), []).append(r)
    out = {}
    for (target, method), rs in groups.items():
        s = dict(n=len(rs), top1=_ms([r['top1'] for r in rs]),
                 macs=_ms([r['macs'] for r in rs]))
        no_recal = [r['top1_no_recal'] for r in rs if 'top1_no_recal' in r]
        if no_recal:
            s['no_recal'] = _ms(no_recal)
            s['n_no_recal'] = len(no_recal)
        ref = {r['seed']: r['top1'] for r in groups.get((target, 'flops'),
                                                          [])}
        diffs = [r['top1'] - ref[r['seed']] for r in rs if r['seed'] in ref]
        if method != 'flops' and len(diffs) > 1:
            mean, std = _ms(diffs)
            s['paired'] = (mean, std / math.sqrt(len(diffs)), len(diffs))
        out[(target, method)] = s
    return out


def versus(s: Dict) -> str:
    """The paired difference to ``flops`` and whether it exceeds 2 standard
    errors."""
    if 'paired' not in s:
        return '–'
    mean, se, n = s['paired']
    return f'{mean:+.2f} ± {se:.2f} ({"beyond" if abs(mean) > 2 * se else "within"} 2 SE)'


def table(summary: Dict, methods) -> str:
    lines = ['| target | method | top-1 (%) | without BN recal. (%) | MACs '
             '| seeds | vs flops (paired, ± SE) |',
             '|---|---|---|---|---|---|---|']
    for target in sorted({t for t, _ in summary}):
        for m in methods:
            s = summary.get((target, m))
            if s is None:
                continue
            nr = f'{s["no_recal"][0]:.2f} ± {s["no_recal"][1]:.2f}' \
                if 'no_recal' in s else '–'
            lines.append(
                f'| {target / 1e6:.2f}M | {m} | {s["top1"][0]:.2f} ± '
                f'{s["top1"][1]:.2f} | {nr} | {s["macs"][0] / 1e6:.3f}M | '
                f'{s["n"]} | {versus(s)} |')
    return '\n'.join(lines) + '\n'


MARKERS = dict(flops='o', budget='P', equal='s', uniform='^', mbv2='X',
               random='v', retrain='D')


def draw_pareto(summary: Dict, methods, study: Study, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout='constrained')
    for m in methods:
        pts = sorted((s['macs'][0], s['top1'][0], s['macs'][1],
                      s['top1'][1]) for (t, mm), s in summary.items()
                     if mm == m)
        if not pts:
            continue
        xs, ys, xe, ye = zip(*pts)
        ax.errorbar([x / 1e6 for x in xs], ys, xerr=[x / 1e6 for x in xe],
                    yerr=ye, marker=MARKERS.get(m, 'o'), capsize=3, label=m,
                    linestyle='-' if m in SEARCHED else ':')
    ax.set_xlabel(f'MACs at {study.side}x{study.side} (M)')
    ax.set_ylabel('validation top-1 (%)')
    ax.set_title(f'{osp.basename(study.config)}: mean ± std over seeds')
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def draw_removed(rows: List[dict], study: Study, path: str) -> None:
    """Fig. 6 style: share of each block's kernel atoms removed by each
    penalty (mean over seeds), a column per target."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    supernet = study.supernet
    targets = sorted({r['target'] for r in rows
                      if r['method'] in SEARCHED}, reverse=True)
    kernels = sorted({k for b in supernet.blocks for k in b.kernels})
    methods = [m for m in SEARCHED
               if any(r['method'] == m for r in rows)]
    if not methods:
        return
    fig, axes = plt.subplots(len(methods), len(targets), sharex=True,
                             sharey=True, squeeze=False,
                             figsize=(5 * len(targets) + 1,
                                      2.4 * len(methods) + 0.6),
                             layout='constrained')
    width = 0.8 / len(kernels)
    for col, target in enumerate(targets):
        for ax, m in zip(axes[:, col], methods):
            specs = [load_spec(r['spec']) for r in rows
                     if r['method'] == m and r['target'] == target]
            ax.set_ylim(0, 100)
            ax.grid(axis='y', alpha=0.3)
            if col == 0:
                ax.set_ylabel(f'{m}\nremoved (%)')
            if ax is axes[0, col]:
                ax.set_title(f'target {target / 1e6:.2f}M MACs',
                             fontsize=9)
            if not specs:  # not run (yet) at this target
                continue
            for j, k in enumerate(kernels):
                share = []
                for i, b in enumerate(supernet.blocks):
                    n = b.kernels.get(k, 0)
                    left = statistics.mean(s.blocks[i].kernels.get(k, 0)
                                           for s in specs)
                    share.append(100 * (n - left) / n if n else 0)
                ax.bar([i + 2 + (j - 1) * width for i in range(len(share))],
                       share, width, label=f'{k}x{k}')
    axes[0, 0].legend(ncol=len(kernels), fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel('block')
    fig.suptitle('atoms removed per block and kernel (mean over seeds)',
                 fontsize=10)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', default=CONFIG)
    p.add_argument('--work-dir', default='work_dirs/ablations')
    p.add_argument('--targets', type=float, nargs='+', default=None,
                   help='MACs targets (default: 1/2 and 1/4 of the '
                   "supernet's)")
    p.add_argument('--seeds', type=int, default=5)
    p.add_argument('--methods', nargs='+', choices=METHODS,
                   default=list(METHODS))
    p.add_argument('--epochs', type=int, default=None,
                   help="default: the config's")
    p.add_argument('--data-root', default=None,
                   help="the data sets' data_root (default: the config's)")
    p.add_argument('--subset', type=int, default=0,
                   help='train on the first N training images only')
    p.add_argument('--weight', type=float, default=None,
                   help="lambda to start the flops calibration from "
                   "(default: the config's penalty weight)")
    p.add_argument('--tolerance', type=float, default=0.1,
                   help='flops lands within this fraction of the target')
    p.add_argument('--calibration-runs', type=int, default=4)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--resume', action='store_true',
                   help='keep the runs already in results.json')
    p.add_argument('--quick', action='store_true',
                   help='one target, two seeds, a short schedule: every row '
                   'of the study, in minutes')
    args = p.parse_args(argv)
    study = Study(args.config)
    if args.targets is None:
        sup = study.macs(study.supernet)
        args.targets = [round(sup / 2, -3), round(sup / 4, -3)]
    if args.weight is None:
        from mmengine.config import Config
        args.weight = Config.fromfile(args.config).optim_wrapper.penalty.weight
    if args.quick:
        args.targets, args.seeds = args.targets[:1], 2
        args.calibration_runs = 1
    return args


def main(argv=None) -> Dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.work_dir, exist_ok=True)
    t0 = time.perf_counter()
    rows = run(args)
    study = Study(args.config)
    summary = summarize(rows)
    md = table(summary, args.methods)
    with open(osp.join(args.work_dir, 'table.md'), 'w') as f:
        f.write(md)
    draw_pareto(summary, args.methods, study,
                osp.join(args.work_dir, 'pareto.png'))
    if any(r['method'] in SEARCHED for r in rows):
        draw_removed(rows, study, osp.join(args.work_dir, 'removed.png'))
    print('\n' + md)
    print(f'{time.perf_counter() - t0:.0f} s; results, table and pictures in '
          f'{args.work_dir}')
    return summary


if __name__ == '__main__':
    main()
