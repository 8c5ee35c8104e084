"""Plot the MACs of the net during an AtomNAS search (the paper's Fig. 2).

    python tools/analysis_tools/plot_flops.py work_dirs/atomnas_c
    python tools/analysis_tools/plot_flops.py \\
        work_dirs/x/20240101_120000/vis_data/scalars.json --out macs.png

Reads the scalars that mmengine's ``LocalVisBackend`` writes (one JSON
object per line): the ``macs`` that ``DynamicShrinkHook`` logs every
iteration, against ``iter``, and the validation ``accuracy/top1`` on a
second y axis when there is one. A search to a budget also logged
``cost_target`` and ``cost_plan``: the target is drawn as a horizontal line
and the planned descent as a dotted curve, on the MACs axis for a MACs
target, else in a second panel with the logged ``cost`` (its unit from the
work dir's ``budget.json``). Given a work dir, the newest
``*/vis_data/scalars.json`` under it is used (a resumed run writes a new
one). Writes ``<WORK_DIR>/macs_curve.png`` unless ``--out`` says otherwise.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use('Agg')  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

MACS_KEYS = ('macs', 'train/macs')
TOP1_KEYS = ('accuracy/top1', 'val/accuracy/top1')
BUDGET_KEYS = ('cost_target', 'cost_plan', 'cost')


def find_scalars(path: str) -> str:
    """The scalars file: ``path`` itself, or the newest
    ``*/vis_data/scalars.json`` under the work dir ``path``."""
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise FileNotFoundError(f'{path}: no such file or directory')
    found = glob.glob(osp.join(path, '*', 'vis_data', 'scalars.json'))
    if not found:
        raise FileNotFoundError(f'{path}: no */vis_data/scalars.json (was '
                                'the run logged with LocalVisBackend?)')
    # Timestamped folder names sort like their times; mtime breaks ties.
    return max(found, key=lambda p: (osp.getmtime(p), p))


def _first(record: dict, keys: Sequence[str]) -> Optional[float]:
    for key in keys:
        if key in record:
            return float(record[key])
    return None


def read_scalars(path: str) -> Tuple[List[Tuple[int, float]],
                                     List[Tuple[int, float]]]:
    """The MACs and validation top-1 curves of a scalars file.

    Validation lines carry ``step``: the epoch in an epoch-based run (then
    it is placed at the last logged iteration of that epoch), the iteration
    in an iteration-based one.

    Returns:
        ([(iter, macs)], [(iter, top1)]), each sorted by iteration.
    """
    macs: Dict[int, float] = {}
    last_iter_of_epoch: Dict[int, int] = {}
    val: List[Tuple[int, float]] = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                # A run killed mid-write leaves a partial last line.
                print(f'warning: {path}:{n}: not JSON, skipped',
                      file=sys.stderr)
                continue
            value = _first(record, MACS_KEYS)
            if value is not None:
                it = int(record.get('iter', record.get('step', n)))
                macs[it] = value
                if 'epoch' in record:
                    epoch = int(record['epoch'])
                    last_iter_of_epoch[epoch] = max(
                        it, last_iter_of_epoch.get(epoch, it))
                continue
            top1 = _first(record, TOP1_KEYS)
            if top1 is not None and 'step' in record:
                val.append((int(record['step']), top1))
    if last_iter_of_epoch:
        val = [(last_iter_of_epoch.get(step, step), top1)
               for step, top1 in val]
    return sorted(macs.items()), sorted(val)


def read_budget(path: str) -> Dict[str, List[Tuple[int, float]]]:
    """The budget scalars of a scalars file: ``cost_target``,
    ``cost_plan`` and ``cost`` (each absent when not logged), against
    iteration."""
    series: Dict[str, Dict[int, float]] = {k: {} for k in BUDGET_KEYS}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if _first(record, MACS_KEYS) is None:
                continue
            it = int(record.get('iter', record.get('step', n)))
            for key in BUDGET_KEYS:
                value = _first(record, (key, f'train/{key}'))
                if value is not None:
                    series[key][it] = value
    return {k: sorted(v.items()) for k, v in series.items() if v}


def budget_unit(scalars: str) -> str:
    """The unit of the budget's cost: from ``budget.json`` in the work dir
    (two levels above ``*/vis_data/scalars.json``), else 'cost'."""
    work = osp.dirname(osp.dirname(osp.dirname(osp.abspath(scalars))))
    try:
        with open(osp.join(work, 'budget.json')) as f:
            return json.load(f).get('unit', 'cost')
    except (OSError, ValueError):
        return 'cost'


def _draw_budget(ax, budget: Dict[str, List[Tuple[int, float]]],
                 scale: float, color: str, suffix: str = '') -> list:
    """Target line and plan curve on ``ax`` (values divided by ``scale``)."""
    handles = []
    if 'cost_plan' in budget:
        px, py = zip(*budget['cost_plan'])
        h, = ax.plot(px, [v / scale for v in py], ':', color=color, lw=1.2,
                     label='plan')
        handles.append(h)
    if 'cost_target' in budget:
        target = budget['cost_target'][-1][1] / scale
        h = ax.axhline(target, ls='--', color=color, lw=1.2,
                       label=f'target {target:.4g}{suffix}')
        handles.append(h)
    return handles


def plot(macs: List[Tuple[int, float]], val: List[Tuple[int, float]],
         path: str, title: Optional[str] = None,
         budget: Optional[Dict[str, List[Tuple[int, float]]]] = None,
         unit: str = 'cost') -> str:
    """Draw MACs (in M) against iteration, and top-1 on a twin axis; with
    ``budget`` (:func:`read_budget`) its target and plan too.

    Returns:
        str: ``path``.
    """
    budget = budget or {}
    other = 'cost' in budget and 'cost_target' in budget  # not a MACs target
    if other:
        fig, (ax, cost_ax) = plt.subplots(
            2, 1, figsize=(7.5, 6.4), layout='constrained', sharex=True,
            height_ratios=(3, 2))
    else:
        fig, ax = plt.subplots(figsize=(7.5, 4.2), layout='constrained')
    its, values = zip(*macs)
    # MACs only change at a shrink: a step curve shows when it happened.
    line, = ax.plot(its, [v / 1e6 for v in values], drawstyle='steps-post',
                    color='#4C72B0', lw=1.8, label='MACs')
    if not other:
        ax.set_xlabel('iteration')
    ax.set_ylabel('MACs (M)', color='#4C72B0')
    ax.tick_params(axis='y', colors='#4C72B0')
    ax.grid(alpha=0.3)
    # The top band stays free for the legend.
    ax.set_ylim(0, max(values) / 1e6 * 1.25)
    handles = [line]
    if budget and not other:
        handles += _draw_budget(ax, budget, 1e6, '#55A868', 'M')
    elif other:
        cx, cy = zip(*budget['cost'])
        c, = cost_ax.plot(cx, cy, drawstyle='steps-post', color='#8172B2',
                          lw=1.8, label=unit)
        cost_ax.set_ylabel(unit, color='#8172B2')
        cost_ax.set_xlabel('iteration')
        cost_ax.grid(alpha=0.3)
        cost_ax.set_ylim(0, max(cy) * 1.15)
        cost_ax.legend(handles=[c] + _draw_budget(cost_ax, budget, 1.0,
                                                  '#55A868', f' {unit}'),
                       loc='upper right', fontsize=9)
    if val:
        twin = ax.twinx()
        vx, vy = zip(*val)
        acc, = twin.plot(vx, vy, 'o-', color='#C44E52', lw=1.2, ms=4,
                         label='val top-1')
        twin.set_ylabel('val top-1 (%)', color='#C44E52')
        twin.tick_params(axis='y', colors='#C44E52')
        twin.set_ylim(0, min(100.0, max(vy) * 1.25) if max(vy) > 0 else 1)
        handles.append(acc)
    ax.legend(handles=handles, loc='upper right', ncol=min(len(handles), 4),
              fontsize=9)
    first, last = values[0], values[-1]
    if not title:
        title = 'MACs during the search'
        if first:
            title += (f': {first / 1e6:.2f}M -> {last / 1e6:.2f}M '
                      f'({100.0 * (last - first) / first:+.1f}%)')
    ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def main(argv: Optional[Sequence[str]] = None) -> str:
    """Command line entry point; returns the written path."""
    parser = argparse.ArgumentParser(
        description='Plot MACs against iteration of an AtomNAS search')
    parser.add_argument('work_dir', help='work dir of the search, or a '
                        'vis_data/scalars.json file')
    parser.add_argument('--out', help='PNG to write (default: '
                        '<WORK_DIR>/macs_curve.png)')
    parser.add_argument('--title', help='figure title')
    args = parser.parse_args(argv)

    try:
        scalars = find_scalars(args.work_dir)
    except FileNotFoundError as e:
        sys.exit(f'error: {e}')
    macs, val = read_scalars(scalars)
    budget = read_budget(scalars)
    if not macs:
        sys.exit(f'error: {scalars}: no scalars with "macs" (was '
                 'DynamicShrinkHook on?)')
    out = args.out or osp.join(
        args.work_dir if osp.isdir(args.work_dir) else osp.dirname(
            osp.abspath(args.work_dir)), 'macs_curve.png')
    if osp.dirname(out):
        os.makedirs(osp.dirname(out), exist_ok=True)
    unit = budget_unit(scalars)
    plot(macs, val, out, args.title, budget, unit)
    (i0, m0), (i1, m1) = macs[0], macs[-1]
    print(f'scalars: {scalars}')
    print(f'MACs: {m0 / 1e6:.4f}M at iter {i0} -> {m1 / 1e6:.4f}M at iter '
          f'{i1} ({100.0 * (m1 - m0) / m0 if m0 else 0.0:+.1f}%)')
    if 'cost_target' in budget:
        target = budget['cost_target'][-1][1]
        final = budget['cost'][-1][1] if 'cost' in budget else m1
        shown = unit if 'cost' in budget else 'MACs'
        print(f'target: {target:.6g} {shown}; final {final:.6g} '
              f'({100.0 * (final / target - 1):+.2f}%)')
    if val:
        print(f'val top-1: {val[-1][1]:.2f} at iter {val[-1][0]}')
    print(out)
    return out


if __name__ == '__main__':
    main()
