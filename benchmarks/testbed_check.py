"""Is the test bed a test bed? Width must matter beyond seed noise.

The test bed (``configs/atomnas/atomnas_testbed.py``, images from
``tools/dataset_converters/make_testbed.py``) is for comparing search
methods; that only works if a net's size shows in its accuracy more than
seed noise does. This check trains the test bed's supernet thinned
uniformly to a few fractions of its atoms (every kernel of every block
keeps ``int(atoms x factor)``) from scratch, without search, over several
seeds (each seed changes the initialisation and the data order, never the
task), and reports per factor:

* validation top-1 (EMA weights with BN recalibration, 10,000 images),
  mean ± std over seeds, and MACs at 32x32;
* for each step to the next factor, the difference in mean top-1 and
  whether it exceeds 2 standard errors of the difference
  (``sqrt(s1^2/n1 + s2^2/n2)``);
* whether the full supernet lands in the intended range (70-92% top-1:
  hard enough not to saturate, easy enough to learn in one run).

Before training, it generates the set (or finds it cached) and fits
colour-only baselines (logistic regression and a small MLP on each image's
colour histogram, mean and std per channel and mean gradient): the task
should not be solvable by colour or global statistics.

Writes ``--work-dir/results.json`` (every run, the baselines, timings and
load averages) and ``--work-dir/table.md``, and prints the table.

    .venv/bin/python benchmarks/testbed_check.py --threads 1   # ~30 min, 5 seeds
    .venv/bin/python benchmarks/testbed_check.py --quick       # 1 seed, 8k images
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

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))

import atomnas_mm  # noqa: E402,F401
from atomnas_mm.models.arch import count, load_spec  # noqa: E402
from atomnas_mm.utils.io import dump_json_atomic  # noqa: E402
import ablations  # noqa: E402

CONFIG = osp.join(ROOT, 'configs', 'atomnas', 'atomnas_testbed.py')
TOP1_RANGE = (70.0, 92.0)


# ------------------------------------------------------------ the nets
def thinned_spec(supernet: dict, factor: float) -> dict:
    """The supernet with every kernel of every block at ``int(atoms x
    factor)`` atoms (:func:`ablations.thinned_spec`), as a validated dict."""
    spec = ablations.thinned_spec(load_spec(copy.deepcopy(supernet)), factor)
    return load_spec(spec.to_dict()).to_dict()


# ------------------------------------------------------------ configs
def make_cfg(work_dir: str, seed: int, arch: dict, args) -> 'Config':
    """The test bed's config, trained without search: plain OptimWrapper
    (the AtomNAS constructor's parameter groups), no penalty, no
    shrinking; EMA and BN recalibration kept. Quiet, no checkpoints."""
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = work_dir
    cfg.experiment_name = osp.basename(work_dir)
    cfg.randomness = dict(seed=seed)
    cfg.log_level = 'WARNING'
    cfg.model.backbone.arch = arch
    cfg.optim_wrapper = dict(
        type='OptimWrapper', optimizer=cfg.optim_wrapper.optimizer,
        constructor='atomnas_mm.AtomNASOptimWrapperConstructor')
    cfg.custom_hooks = [h for h in cfg.custom_hooks
                        if 'DynamicShrinkHook' not in h['type']]
    cfg.default_hooks.logger.interval = 10 ** 6
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=10 ** 6, save_last=False)
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = args.data_root
    if args.train_images:
        cfg.train_dataloader.dataset.indices = args.train_images
    if args.epochs:
        cfg.train_cfg.max_epochs = args.epochs
        cfg.train_cfg.val_interval = args.epochs
        cfg.param_scheduler[-1].end = args.epochs
    if args.optimizer == 'sgd':
        # For comparing training recipes: plain SGD starts at full step
        # size, where RMSpropTF (mean square initialised to 1) starts slow.
        cfg.optim_wrapper.optimizer = dict(
            type='SGD', lr=0.1, momentum=0.9, nesterov=True,
            weight_decay=4e-5)
    if args.lr:
        cfg.optim_wrapper.optimizer.lr = args.lr
    return cfg


@contextlib.contextmanager
def quiet():
    """mmengine logs and draws progress bars: keep the table readable."""
    logging.getLogger('mmengine').setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        yield


def train_and_eval(cfg, raw: bool = False) -> dict:
    """Train, then evaluate the EMA weights after BN recalibration (and,
    with ``raw``, the trained weights with their own BN statistics)."""
    from mmengine.runner import Runner
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    with quiet():
        runner = Runner.from_cfg(cfg)
        runner.train()
        curve = loss_curve(runner)
        top1 = float(runner.val_loop.run()['accuracy/top1'])
        top1_raw = None
        if raw:
            # The raw weights with their training BN statistics: tells
            # EMA/recalibration effects apart from the net's own.
            hooks = runner._hooks  # the run is over: only evaluation left
            runner._hooks = [h for h in hooks if not any(
                n in type(h).__name__
                for n in ('EMAHook', 'BNRecalibration'))]
            top1_raw = float(runner.val_loop.run()['accuracy/top1'])
            runner._hooks = hooks
    return dict(top1=top1, top1_raw=top1_raw,
                seconds=time.perf_counter() - t0,
                load=[round(load0, 2), round(os.getloadavg()[0], 2)],
                loss_curve=curve)


def loss_curve(runner, window: int = 50) -> List[float]:
    """Mean training loss over each ``window`` iterations (the message
    hub keeps every iteration's): shows how soon training leaves chance
    (``log(num_classes)`` with label smoothing)."""
    losses, _ = runner.message_hub.get_scalar('train/loss').data
    return [round(float(np.mean(losses[i:i + window])), 3)
            for i in range(0, len(losses), window)]


# ------------------------------------------------------------ baselines
def colour_features(images: np.ndarray) -> np.ndarray:
    """Per image: a 4x4x4 joint colour histogram, mean and std per channel
    and mean absolute gradient per direction (72 numbers)."""
    x = np.asarray(images, np.float32)
    n = len(x)
    q = (x // 64).astype(np.int64)
    bins = (q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).reshape(n, -1)
    hist = np.zeros((n, 64), np.float32)
    np.add.at(hist, (np.repeat(np.arange(n), bins.shape[1]),
                     bins.reshape(-1)), 1)
    hist /= bins.shape[1]
    stats = [x.mean((1, 2)) / 255, x.std((1, 2)) / 255,
             np.abs(np.diff(x, axis=1)).mean((1, 2, 3))[:, None] / 255,
             np.abs(np.diff(x, axis=2)).mean((1, 2, 3))[:, None] / 255]
    return np.concatenate([hist] + stats, 1)


def colour_baselines(set_dir: str, num_train: int = 20000) -> dict:
    """Top-1 (%) of colour-only classifiers on the validation set: a
    logistic regression on the 72 features, a one-hidden-layer MLP on them,
    and a logistic regression on the mean colour alone."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler
    xt = np.load(osp.join(set_dir, 'train_images.npy'), mmap_mode='r')
    yt = np.load(osp.join(set_dir, 'train_labels.npy'))[:num_train]
    xv = np.load(osp.join(set_dir, 'val_images.npy'), mmap_mode='r')
    yv = np.load(osp.join(set_dir, 'val_labels.npy'))
    ft, fv = colour_features(xt[:num_train]), colour_features(xv)
    scaler = StandardScaler().fit(ft)
    ft, fv = scaler.transform(ft), scaler.transform(fv)
    out = dict(train_images=int(len(yt)),
               chance=100.0 / len(np.unique(yt)))
    out['logreg'] = 100 * LogisticRegression(max_iter=1000).fit(
        ft, yt).score(fv, yv)
    out['mlp'] = 100 * MLPClassifier(
        (128, ), max_iter=200, early_stopping=True,
        random_state=0).fit(ft, yt).score(fv, yv)
    out['mean_colour_logreg'] = 100 * LogisticRegression(
        max_iter=1000).fit(ft[:, 64:67], yt).score(fv[:, 64:67], yv)
    return out


# ------------------------------------------------------------ reporting
def summarize(rows: List[dict]) -> Dict[float, dict]:
    """factor -> n, mean and std of top-1, MACs, mean seconds."""
    out: Dict[float, dict] = {}
    for f in sorted({r['factor'] for r in rows}):
        rs = [r for r in rows if r['factor'] == f]
        t = [r['top1'] for r in rs]
        out[f] = dict(n=len(t), mean=statistics.mean(t),
                      std=statistics.stdev(t) if len(t) > 1 else 0.0,
                      macs=rs[0]['macs'], params=rs[0]['params'],
                      seconds=statistics.mean(r['seconds'] for r in rs))
    return out


def steps(summary: Dict[float, dict]) -> List[dict]:
    """Each step to the next factor: difference, its standard error and
    whether it exceeds 2 SE (needs 2+ seeds on both sides)."""
    fs = sorted(summary)
    out = []
    for a, b in zip(fs, fs[1:]):
        sa, sb = summary[a], summary[b]
        diff = sb['mean'] - sa['mean']
        se = (sa['std'] ** 2 / sa['n'] + sb['std'] ** 2 / sb['n']) ** 0.5
        ok = sa['n'] > 1 and sb['n'] > 1 and diff > 2 * se
        out.append(dict(step=f'{a:g}x -> {b:g}x', diff=diff, se=se,
                        beyond_2se=bool(ok),
                        seeds_known=sa['n'] > 1 and sb['n'] > 1))
    return out


def table(summary: Dict[float, dict], step_rows: List[dict],
          baselines: Optional[dict], threads: int) -> str:
    lines = ['| atoms | MACs (32x32) | params | top-1 (%) | seeds | '
             f's/run ({threads} thread{"s" if threads > 1 else ""}) |',
             '|---|---|---|---|---|---|']
    for f, s in summary.items():
        lines.append(f'| {f:g}x | {s["macs"] / 1e6:.2f}M | '
                     f'{s["params"] / 1e6:.3f}M | {s["mean"]:.2f} ± '
                     f'{s["std"]:.2f} | {s["n"]} | {s["seconds"]:.0f} |')
    lines += ['', '| step | top-1 difference | SE of difference | '
              '> 2 SE |', '|---|---|---|---|']
    for st in step_rows:
        verdict = ('yes' if st['beyond_2se'] else 'NO') \
            if st['seeds_known'] else '1 seed: unknown'
        lines.append(f'| {st["step"]} | {st["diff"]:+.2f} | {st["se"]:.2f} '
                     f'| {verdict} |')
    top = summary[max(summary)]
    lo, hi = TOP1_RANGE
    lines += ['', f'largest net: {top["mean"]:.2f}% top-1 '
              f'({"inside" if lo <= top["mean"] <= hi else "OUTSIDE"} the '
              f'intended {lo:g}-{hi:g}%)']
    if baselines:
        lines.append(
            f'colour-only baselines (chance {baselines["chance"]:.1f}%): '
            f'logistic regression {baselines["logreg"]:.1f}%, MLP '
            f'{baselines["mlp"]:.1f}%, mean colour alone '
            f'{baselines["mean_colour_logreg"]:.1f}%')
    return '\n'.join(lines) + '\n'


# ------------------------------------------------------------ main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--work-dir', default='work_dirs/testbed_check')
    p.add_argument('--data-root', default='data/testbed')
    p.add_argument('--seeds', type=int, default=5)
    p.add_argument('--first-seed', type=int, default=0)
    p.add_argument('--factors', type=float, nargs='+',
                   default=[0.25, 0.5, 1.0])
    p.add_argument('--threads', type=int, default=1,
                   help='torch threads per run')
    p.add_argument('--train-images', type=int, default=None,
                   help="training images per epoch (default: the config's)")
    p.add_argument('--epochs', type=int, default=None,
                   help="default: the config's")
    p.add_argument('--lr', type=float, default=None,
                   help="default: the config's")
    p.add_argument('--optimizer', choices=('config', 'sgd'),
                   default='config',
                   help="the config's (AtomNASRMSprop) or SGD with Nesterov "
                   'momentum, lr 0.1 unless --lr')
    p.add_argument('--skip-baseline', action='store_true')
    p.add_argument('--raw', action='store_true',
                   help='also evaluate the trained weights without EMA and '
                   'recalibration (one more pass over the validation set)')
    p.add_argument('--resume', action='store_true',
                   help='keep the runs already in results.json')
    p.add_argument('--quick', action='store_true',
                   help='1 seed, 8,000 training images: a smoke run')
    args = p.parse_args(argv)
    if args.quick:
        args.seeds = 1
        args.train_images = args.train_images or 8000
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.work_dir, exist_ok=True)
    path = osp.join(args.work_dir, 'results.json')
    prev = {}
    if args.resume and osp.isfile(path):
        with open(path) as f:
            prev = json.load(f)
    from mmengine.config import Config

    from atomnas_mm.datasets import testbed_images as make_testbed
    cfg = Config.fromfile(CONFIG)
    opts = dict(cfg.train_dataloader.dataset)
    set_opts = {k: opts[k] for k in ('seed', 'num_train', 'num_val',
                                     'size')}
    t0 = time.perf_counter()
    info = make_testbed.generate(args.data_root, **set_opts)
    gen = dict(dir=info['dir'], cached=info['cached'],
               render_seconds=info['seconds'],
               call_seconds=time.perf_counter() - t0)
    print(f'test bed: {info["dir"]} ({"cached; " if info["cached"] else ""}'
          f'rendered in {info["seconds"]:.1f} s)', flush=True)
    results = dict(generation=gen, args=vars(args),
                   load_at_start=list(os.getloadavg()),
                   baselines=prev.get('baselines'), runs=prev.get('runs',
                                                                  []))
    if not args.skip_baseline and not results['baselines']:
        t0 = time.perf_counter()
        results['baselines'] = colour_baselines(info['dir'])
        results['baselines']['seconds'] = time.perf_counter() - t0
        b = results['baselines']
        print(f'colour-only baselines: logistic regression '
              f'{b["logreg"]:.1f}%, MLP {b["mlp"]:.1f}%, mean colour '
              f'{b["mean_colour_logreg"]:.1f}% (chance {b["chance"]:.1f}%)',
              flush=True)

    supernet = load_spec(cfg.model.backbone.arch.to_dict()).to_dict()
    size, classes = set_opts['size'], cfg.model.head.num_classes
    rows: List[dict] = results['runs']
    for factor in args.factors:
        arch = thinned_spec(supernet, factor)
        cost = count(arch, size, classes)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            if any(r['factor'] == factor and r['seed'] == seed
                   for r in rows):
                continue
            work = osp.join(args.work_dir, 'runs', f'x{factor:g}_s{seed}')
            result = train_and_eval(make_cfg(work, seed, arch, args),
                                    raw=args.raw)
            result.update(factor=factor, seed=seed, macs=cost.macs,
                          params=cost.params, threads=args.threads,
                          train_images=args.train_images, epochs=args.epochs,
                          lr=args.lr, optimizer=args.optimizer)
            rows.append(result)
            dump_json_atomic(results, path, indent=1)
            raw = ('' if result['top1_raw'] is None else
                   f' (raw weights {result["top1_raw"]:6.2f})')
            print(f'  {factor:g}x seed {seed}: top-1 {result["top1"]:6.2f}'
                  f'{raw}'
                  f'  {cost.macs / 1e6:.2f}M MACs  {result["seconds"]:.0f} s'
                  f' (load {result["load"][0]:.1f} -> '
                  f'{result["load"][1]:.1f})', flush=True)
    summary = summarize([r for r in rows if r['factor'] in args.factors])
    step_rows = steps(summary)
    results.update(summary={f'{k:g}': v for k, v in summary.items()},
                   steps=step_rows, load_at_end=list(os.getloadavg()))
    dump_json_atomic(results, path, indent=1)
    md = table(summary, step_rows, results['baselines'], args.threads)
    with open(osp.join(args.work_dir, 'table.md'), 'w') as f:
        f.write(md)
    print('\n' + md)
    return results


if __name__ == '__main__':
    main()
