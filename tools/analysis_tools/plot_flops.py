"""Plot the MACs of the net during an AtomNAS search (the paper's Fig. 2).

    python tools/analysis_tools/plot_flops.py work_dirs/atomnas_c
    python tools/analysis_tools/plot_flops.py \\
        work_dirs/x/20240101_120000/vis_data/scalars.json --out macs.png

Reads the scalars that mmengine's ``LocalVisBackend`` writes (one JSON
object per line): the ``macs`` that ``DynamicShrinkHook`` logs every
iteration, against ``iter``, and the validation ``accuracy/top1`` on a
second y axis when there is one. Given a work dir, the newest
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


def plot(macs: List[Tuple[int, float]], val: List[Tuple[int, float]],
         path: str, title: Optional[str] = None) -> str:
    """Draw MACs (in M) against iteration, and top-1 on a twin axis.

    Returns:
        str: ``path``.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout='constrained')
    its, values = zip(*macs)
    # MACs only change at a shrink: a step curve shows when it happened.
    line, = ax.plot(its, [v / 1e6 for v in values], drawstyle='steps-post',
                    color='#4C72B0', lw=1.8, label='MACs')
    ax.set_xlabel('iteration')
    ax.set_ylabel('MACs (M)', color='#4C72B0')
    ax.tick_params(axis='y', colors='#4C72B0')
    ax.grid(alpha=0.3)
    # The top band stays free for the legend.
    ax.set_ylim(0, max(values) / 1e6 * 1.25)
    handles = [line]
    if val:
        twin = ax.twinx()
        vx, vy = zip(*val)
        acc, = twin.plot(vx, vy, 'o-', color='#C44E52', lw=1.2, ms=4,
                         label='val top-1')
        twin.set_ylabel('val top-1 (%)', color='#C44E52')
        twin.tick_params(axis='y', colors='#C44E52')
        twin.set_ylim(0, min(100.0, max(vy) * 1.25) if max(vy) > 0 else 1)
        handles.append(acc)
    ax.legend(handles=handles, loc='upper right', ncol=len(handles),
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
    if not macs:
        sys.exit(f'error: {scalars}: no scalars with "macs" (was '
                 'DynamicShrinkHook on?)')
    out = args.out or osp.join(
        args.work_dir if osp.isdir(args.work_dir) else osp.dirname(
            osp.abspath(args.work_dir)), 'macs_curve.png')
    if osp.dirname(out):
        os.makedirs(osp.dirname(out), exist_ok=True)
    plot(macs, val, out, args.title)
    (i0, m0), (i1, m1) = macs[0], macs[-1]
    print(f'scalars: {scalars}')
    print(f'MACs: {m0 / 1e6:.4f}M at iter {i0} -> {m1 / 1e6:.4f}M at iter '
          f'{i1} ({100.0 * (m1 - m0) / m0 if m0 else 0.0:+.1f}%)')
    if val:
        print(f'val top-1: {val[-1][1]:.2f} at iter {val[-1][0]}')
    print(out)
    return out


if __name__ == '__main__':
    main()
