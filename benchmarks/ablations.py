"""The paper's ablations in miniature, against simple baselines, with seeds.

Does the search find better nets than simpler ways to reach the same size?
At each MACs target, every method trains for the same epochs on the same
data, and each point is repeated over seeds (mean +- std):

* ``flops``: the search to the target with the resource-aware penalty
  (every atom weighted by its MACs), as configured;
* ``equal``: the same search with every atom weighted 1 (Table 2's
  baseline of the paper);
* ``uniform``: the supernet thinned uniformly (every kernel's atoms scaled
  by one factor, found by bisection to meet the target), from scratch;
* ``random``: atoms of the supernet removed at random until the target is
  met, from scratch;
* ``retrain``: the spec the ``flops`` search found, trained from scratch
  (one pass of search + training against retraining its result).

Every searched net is also evaluated without BN recalibration (Table 3 of
the paper): its EMA weights with the training net's running statistics.

The task: the digits demo saturates near 98-99% top-1 on the full set,
which hides every difference. Here the training set keeps 30 images per
class, a fifth of them filed under a wrong class, and training augments
with random resized crops (scale 0.4-1) and rotations (+-20 degrees); the
validation set is the demo's, clean. Everything is embedded (scikit-learn's
digits) and runs on a CPU. 30 epochs at batch 16 (600 steps); the searches
reach their target by half of training and train the final net after.

The searches' settings (lambda starts at 5e-4, the budget controller may
scale it by at most 10) are not the demo's: with its 2e-3 and the
controller's default range (up to 1000x), or at batch 32 (300 steps), the
controller drove lambda far up while no gamma had yet crossed the
threshold, every gamma fell together under RMSprop, the net's function
collapsed (training loss back to chance) and the one-pass result scored
20-40% where its own spec retrained scored 84%. A short, noisy task
gives the penalty little task gradient to push against; see the closing
note of this study.

Writes to ``--work-dir``: ``results.json`` (every run), ``table.md`` (the
table), ``pareto.png`` (top-1 against MACs, mean and std per method and
target) and ``removed.png`` (where each penalty removed atoms, per block
and kernel, as the paper's Fig. 6).

    .venv/bin/python benchmarks/ablations.py            # ~30 min on 2 cores
    .venv/bin/python benchmarks/ablations.py --quick    # < 5 min
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import os
import os.path as osp
import statistics
import sys
import time
from typing import Dict, List, Optional

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))

import atomnas_mm  # noqa: E402,F401
from atomnas_mm.models.arch import ArchSpec, count, load_spec  # noqa: E402

DEMO_CONFIG = osp.join(ROOT, 'configs', 'atomnas', 'atomnas_demo_digits.py')
METHODS = ('flops', 'equal', 'uniform', 'random', 'retrain')
SIDE, CLASSES = 16, 10


def macs(spec) -> int:
    return count(spec, SIDE, CLASSES).macs


# ------------------------------------------------------------ the nets
def uniform_spec(supernet: ArchSpec, target: float) -> ArchSpec:
    """Every kernel of every block keeps the same fraction of its atoms
    (at least one atom per block without residual): the largest fraction
    whose net is within the target."""
    def thinned(f: float) -> ArchSpec:
        spec = copy.deepcopy(supernet)
        for b in spec.blocks:
            kept = {k: int(n * f) for k, n in b.kernels.items()}
            if not any(kept.values()) and not b.has_residual:
                kept[min(b.kernels)] = 1
            b.kernels = {k: n for k, n in kept.items() if n}
        return spec

    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if macs(thinned(mid)) <= target else (lo, mid)
    return thinned(lo)


def random_spec(supernet: ArchSpec, target: float, seed: int) -> ArchSpec:
    """Atoms removed one by one, uniformly at random among all remaining,
    until the net is within the target (a block without residual keeps
    one)."""
    g = torch.Generator().manual_seed(seed)
    spec = copy.deepcopy(supernet)
    atoms = [(i, k) for i, b in enumerate(spec.blocks)
             for k, n in b.kernels.items() for _ in range(n)]
    order = torch.randperm(len(atoms), generator=g).tolist()
    costs = count(spec, SIDE, CLASSES).blocks
    total = macs(spec)
    for j in order:
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
def base_cfg(work_dir: str, data_root: str, seed: int, epochs: int,
             arch, batch_size: int = 32) -> 'Config':
    """The demo's config on the hard digits: augmentation, epochs, seed,
    quiet logging, no intermediate checkpoints or validation."""
    from mmengine.config import Config
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.work_dir = work_dir
    cfg.experiment_name = osp.basename(work_dir)
    cfg.randomness = dict(seed=seed)
    cfg.log_level = 'WARNING'
    cfg.model.backbone.arch = arch
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_interval = epochs
    cfg.default_hooks.logger.interval = 1000
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=epochs, save_last=False)
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = data_root
    cfg.train_dataloader.batch_size = batch_size
    cfg.train_dataloader.dataset.pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='RandomResizedCrop', scale=SIDE,
             crop_ratio_range=(0.4, 1.0), backend='pillow',
             interpolation='bicubic'),
        dict(type='Rotate', angle=20.0, prob=0.5, pad_val=0,
             interpolation='bilinear'),
        dict(type='PackInputs'),
    ]
    # Decay over the run's own length.
    cfg.param_scheduler[-1].end = epochs
    return cfg


def search_cfg(cfg, cost: str, target: float, epochs: int,
               target_by: float = 0.5, scale_max: Optional[float] = None,
               weight: float = 2e-3, ramp: float = 0.125):
    """The budget search: the penalty weighted by ``cost``, the target in
    MACs, reached by half of training."""
    cfg.optim_wrapper.penalty = dict(
        weight=weight, ramp_epochs=max(1, round(epochs * ramp)),
        input_size=SIDE,
        num_classes=CLASSES, cost=cost, target=dict(macs=float(target)),
        target_by=target_by)
    if scale_max is not None:
        cfg.optim_wrapper.penalty.controller = dict(
            scale_range=(1e-2, scale_max))
    cfg.custom_hooks[0] = dict(
        type='atomnas_mm.DynamicShrinkHook', momentum=0.9, threshold=1e-2,
        delta=1e4, interval=5, by_epoch=False, input_size=SIDE,
        num_classes=CLASSES)
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
    """mmengine prints progress bars and logs: keep the benchmark's own
    output readable."""
    logging.getLogger('mmengine').setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        yield


def train_and_eval(cfg, searched: bool) -> dict:
    """Train, then evaluate the EMA weights with BN recalibration (and,
    for a searched net, without)."""
    from mmengine.runner import Runner

    from atomnas_mm.engine.hooks import BNRecalibrationHook
    from atomnas_mm.engine.utils import find_backbone
    t0 = time.perf_counter()
    with quiet():
        runner = Runner.from_cfg(cfg)
        runner.train()
        top1 = runner.val_loop.run()['accuracy/top1']
        result = dict(top1=float(top1))
        if searched:
            hooks = runner._hooks  # the run is over: only evaluation left
            runner._hooks = [h for h in hooks
                             if not isinstance(h, BNRecalibrationHook)]
            result['top1_no_recal'] = float(
                runner.val_loop.run()['accuracy/top1'])
            runner._hooks = hooks
    spec = find_backbone(runner.model).arch_spec
    result.update(macs=macs(spec), spec=spec.to_dict(),
                  seconds=time.perf_counter() - t0)
    return result


# ------------------------------------------------------------ the study
def run(args) -> List[dict]:
    from digits_to_folder import convert
    data_root = osp.join(args.work_dir, 'digits_hard')
    counts = convert(data_root, 0, args.per_class, args.label_noise)
    print(f'data: {counts["train"]} training images ({args.per_class} per '
          f'class, {args.label_noise:.0%} wrong labels), {counts["val"]} '
          f'clean validation images; {args.epochs} epochs, seeds '
          f'{args.seeds}, targets {args.targets}', flush=True)
    from mmengine.config import Config
    supernet = load_spec(Config.fromfile(DEMO_CONFIG).model.backbone.arch
                         .to_dict())
    print(f'supernet: {macs(supernet):,} MACs at {SIDE}x{SIDE}', flush=True)
    rows: List[dict] = []
    path = osp.join(args.work_dir, 'results.json')
    done = json.load(open(path)) if osp.isfile(path) and args.resume else []
    for target in args.targets:
        for seed in range(args.seeds):
            searched_spec = None
            for method in args.methods:
                key = dict(target=target, seed=seed, method=method)
                prev = [r for r in done if all(r[k] == v
                                               for k, v in key.items())]
                if prev:
                    rows.append(prev[0])
                    if method == 'flops':
                        searched_spec = prev[0]['spec']
                    continue
                work = osp.join(args.work_dir, 'runs',
                                f'{method}_{int(target)}_s{seed}')
                if method in ('flops', 'equal'):
                    cfg = search_cfg(base_cfg(work, data_root, seed,
                                              args.epochs,
                                              supernet.to_dict(),
                                              args.batch_size),
                                     'macs' if method == 'flops' else
                                     'equal', target, args.epochs,
                                     args.target_by, args.scale_max,
                                     args.weight, args.ramp)
                else:
                    if method == 'uniform':
                        spec = uniform_spec(supernet, target)
                    elif method == 'random':
                        spec = random_spec(supernet, target, seed)
                    else:  # retrain
                        if searched_spec is None:
                            continue
                        spec = load_spec(searched_spec)
                    cfg = scratch_cfg(base_cfg(work, data_root, seed,
                                               args.epochs, spec.to_dict(),
                                               args.batch_size))
                result = train_and_eval(cfg, method in ('flops', 'equal'))
                result.update(key)
                if method == 'flops':
                    searched_spec = result['spec']
                rows.append(result)
                json.dump(rows, open(path, 'w'))
                print(f'  target {target / 1e6:.2f}M seed {seed} '
                      f'{method:8s} top-1 {result["top1"]:6.2f}'
                      + (f' (no recal {result["top1_no_recal"]:6.2f})'
                         if 'top1_no_recal' in result else '')
                      + f'  {result["macs"] / 1e6:.3f}M MACs  '
                      f'{result["seconds"]:.0f} s', flush=True)
    return rows


# ------------------------------------------------------------ reporting
def summarize(rows: List[dict]) -> Dict:
    """(target, method) -> mean/std of top-1, top-1 without recalibration
    and MACs over seeds."""
    groups: Dict = {}
    for r in rows:
        groups.setdefault((r['target'], r['method']), []).append(r)

    def ms(values: List[float]):
        return (statistics.mean(values),
                statistics.stdev(values) if len(values) > 1 else 0.0)

    out = {}
    for key, rs in groups.items():
        out[key] = dict(n=len(rs), top1=ms([r['top1'] for r in rs]),
                        macs=ms([r['macs'] for r in rs]))
        if all('top1_no_recal' in r for r in rs):
            out[key]['no_recal'] = ms([r['top1_no_recal'] for r in rs])
    return out


def table(summary: Dict, methods) -> str:
    """The markdown table: per target and method, mean ± std over seeds,
    and the difference to the ``flops`` search with whether it exceeds
    seed noise (|difference| > 2 standard errors of the difference)."""
    lines = ['| target | method | top-1 (%) | top-1 without BN recal. (%) '
             '| final MACs | seeds | top-1 vs flops |',
             '|---|---|---|---|---|---|---|']
    for target in sorted({t for t, _ in summary}):
        ref = summary.get((target, 'flops'))
        for m in methods:
            s = summary.get((target, m))
            if s is None:
                continue
            nr = f'{s["no_recal"][0]:.2f} ± {s["no_recal"][1]:.2f}' \
                if 'no_recal' in s else '–'
            lines.append(
                f'| {target / 1e6:.2f}M | {m} | {s["top1"][0]:.2f} ± '
                f'{s["top1"][1]:.2f} | {nr} | {s["macs"][0] / 1e6:.3f}M ± '
                f'{s["macs"][1] / 1e6:.3f}M | {s["n"]} | '
                f'{versus(s, ref) if m != "flops" else "–"} |')
    return '\n'.join(lines) + '\n'


def versus(s: Dict, ref: Optional[Dict]) -> str:
    """``s`` - ``ref`` in mean top-1, and whether it is beyond seed noise
    (needs 2+ seeds each)."""
    if ref is None:
        return '–'
    diff = s['top1'][0] - ref['top1'][0]
    if s['n'] < 2 or ref['n'] < 2:
        return f'{diff:+.2f} (1 seed: noise unknown)'
    se = (s['top1'][1] ** 2 / s['n'] + ref['top1'][1] ** 2 / ref['n']) ** 0.5
    return f'{diff:+.2f} ({"beyond" if abs(diff) > 2 * se else "within"} ' \
        f'noise, 2 SE = {2 * se:.2f})'


def draw_pareto(summary: Dict, methods, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    markers = dict(flops='o', equal='s', uniform='^', random='v',
                   retrain='D')
    fig, ax = plt.subplots(figsize=(6, 4), layout='constrained')
    for m in methods:
        pts = sorted((s['macs'][0], s['top1'][0], s['macs'][1],
                      s['top1'][1]) for (t, mm), s in summary.items()
                     if mm == m)
        if not pts:
            continue
        xs, ys, xe, ye = zip(*pts)
        ax.errorbar([x / 1e6 for x in xs], ys, xerr=[x / 1e6 for x in xe],
                    yerr=ye, marker=markers.get(m, 'o'), capsize=3,
                    label=m, linestyle='-' if m in ('flops', 'equal')
                    else ':')
    ax.set_xlabel(f'MACs at {SIDE}x{SIDE} (M)')
    ax.set_ylabel('validation top-1 (%)')
    ax.set_title('digits, 30 per class, 20% wrong labels: mean ± std')
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def draw_removed(rows: List[dict], supernet: ArchSpec, path: str) -> None:
    """Fig. 6 style: share of each block's kernel atoms removed by each
    penalty (mean over seeds, the smallest target)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    target = min(r['target'] for r in rows)
    kernels = sorted({k for b in supernet.blocks for k in b.kernels})
    methods = [m for m in ('flops', 'equal')
               if any(r['method'] == m for r in rows)]
    fig, axes = plt.subplots(len(methods), 1, sharex=True, squeeze=False,
                             figsize=(7, 2.4 * len(methods) + 0.6),
                             layout='constrained')
    width = 0.8 / len(kernels)
    for ax, m in zip(axes[:, 0], methods):
        specs = [load_spec(r['spec']) for r in rows
                 if r['method'] == m and r['target'] == target]
        for j, k in enumerate(kernels):
            share = []
            for i, b in enumerate(supernet.blocks):
                n = b.kernels.get(k, 0)
                left = statistics.mean(s.blocks[i].kernels.get(k, 0)
                                       for s in specs)
                share.append(100 * (n - left) / n if n else 0)
            ax.bar([i + 2 + (j - 1) * width for i in range(len(share))],
                   share, width, label=f'{k}x{k}')
        ax.set_ylabel(f'{m}\nremoved (%)')
        ax.set_ylim(0, 100)
        ax.grid(axis='y', alpha=0.3)
    axes[0, 0].legend(ncol=len(kernels), fontsize=8)
    axes[-1, 0].set_xlabel('block')
    fig.suptitle(f'atoms removed per block and kernel, target '
                 f'{target / 1e6:.2f}M MACs', fontsize=10)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--work-dir', default='work_dirs/ablations')
    p.add_argument('--targets', type=float, nargs='+',
                   default=[0.6e6, 1.0e6], help='MACs at 16x16')
    p.add_argument('--seeds', type=int, default=3)
    p.add_argument('--epochs', type=int, default=30)
    p.add_argument('--methods', nargs='+', choices=METHODS,
                   default=list(METHODS))
    p.add_argument('--per-class', type=int, default=30)
    p.add_argument('--label-noise', type=float, default=0.2)
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--target-by', type=float, default=0.5,
                   help='fraction of training by which a search reaches '
                   'its target')
    p.add_argument('--weight', type=float, default=5e-4,
                   help="the penalty's starting lambda")
    p.add_argument('--ramp', type=float, default=0.125,
                   help="lambda's ramp, a fraction of training")
    p.add_argument('--scale-max', type=float, default=10.0,
                   help="the budget controller's largest lambda multiplier "
                   '(default: its own)')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--resume', action='store_true',
                   help='keep the runs already in results.json')
    p.add_argument('--quick', action='store_true',
                   help='one target, one seed, 6 epochs: the same rows, '
                   'in minutes')
    args = p.parse_args(argv)
    if args.quick:
        args.targets, args.seeds, args.epochs = [args.targets[-1]], 1, 6
    return args


def main(argv=None) -> Dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.work_dir, exist_ok=True)
    t0 = time.perf_counter()
    rows = run(args)
    summary = summarize(rows)
    md = table(summary, args.methods)
    with open(osp.join(args.work_dir, 'table.md'), 'w') as f:
        f.write(md)
    from mmengine.config import Config
    supernet = load_spec(Config.fromfile(DEMO_CONFIG).model.backbone.arch
                         .to_dict())
    draw_pareto(summary, args.methods, osp.join(args.work_dir,
                                                'pareto.png'))
    if any(r['method'] in ('flops', 'equal') for r in rows):
        draw_removed(rows, supernet, osp.join(args.work_dir, 'removed.png'))
    print('\n' + md)
    print(f'{time.perf_counter() - t0:.0f} s; results, table and pictures in '
          f'{args.work_dir}')
    return summary


if __name__ == '__main__':
    main()
