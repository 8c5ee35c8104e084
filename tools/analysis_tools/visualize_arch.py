"""Draw a searched AtomNAS architecture, like Fig. 5 and Fig. 6 of the paper.

    python tools/analysis_tools/visualize_arch.py atomnas_c
    python tools/analysis_tools/visualize_arch.py work_dirs/x/deploy.pth
    python tools/analysis_tools/visualize_arch.py my_spec.json --show-title X
    python tools/analysis_tools/visualize_arch.py work_dirs/x/epoch_50.pth \\
        --supernet work_dirs/x/arch/iter_0.json --out-dir figs

Two PNGs are written, ``<name>_arch.png`` and ``<name>_kernels.png``:

* the architecture (Fig. 5): for every searchable block, numbered 2..N+1
  as in the paper (block 1 is the fixed first block), a stacked bar of its
  expanded channels per depthwise kernel size, with the stages (output
  channels, resolution) and the stride-2 blocks marked;
* the kernel shares (Fig. 6): per block, which share of the surviving atoms
  each kernel holds, and which share of the supernet's atoms died, split by
  kernel.

The supernet is the shipped ``supernet_stem16`` (stem 16) or ``supernet``
when its blocks match the spec's, otherwise one derived from the spec with
``6 * C_in`` atoms per kernel 3/5/7; ``--supernet`` names another.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use('Agg')  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

import atomnas_mm  # noqa: E402,F401  (safe loading of mmengine checkpoints)
from atomnas_mm.models.arch import (ArchSpec, SpecError,  # noqa: E402
                                    load_spec)
from atomnas_mm.models.arch.spec import SpecLike  # noqa: E402
from atomnas_mm.models.resolve import resolve_arch  # noqa: E402

SUPERNET_KERNELS = (3, 5, 7)
SUPERNET_EXPANSION = 6
# The paper's numbering: block 1 is the fixed first block.
FIRST_INDEX = 2
KERNEL_COLOURS = {3: '#4C72B0', 5: '#DD8452', 7: '#55A868'}
EXTRA_COLOURS = ['#C44E52', '#8172B3', '#937860', '#DA8BC3', '#8C8C8C']


# ---------------------------------------------------------------- inputs
def read_input(arg: str) -> Tuple[ArchSpec, str, str]:
    """Resolve the command line argument (anything
    :func:`atomnas_mm.models.resolve_arch` takes: name, spec, checkpoint,
    config).

    Returns:
        (spec, name for the output files, default output folder).
    """
    spec = resolve_arch(arg).spec
    if osp.isfile(arg):
        stem = osp.splitext(osp.basename(arg))[0]
        return spec, stem, osp.dirname(osp.abspath(arg))
    return spec, arg, os.getcwd()


def derived_supernet(spec: ArchSpec) -> ArchSpec:
    """The spec's blocks with the supernet's width: ``6 * C_in`` atoms for
    each of kernels 3, 5 and 7."""
    data = spec.to_dict()
    for block in data['blocks']:
        n = SUPERNET_EXPANSION * block['in_channels']
        block['kernels'] = {str(k): n for k in SUPERNET_KERNELS}
    return load_spec(data)


def _same_blocks(a: ArchSpec, b: ArchSpec) -> bool:
    return len(a.blocks) == len(b.blocks) and all(
        (x.in_channels, x.out_channels, x.stride) ==
        (y.in_channels, y.out_channels, y.stride)
        for x, y in zip(a.blocks, b.blocks))


def default_supernet(spec: ArchSpec) -> Tuple[ArchSpec, str]:
    """The supernet a spec was most likely searched from, and its name."""
    names = (['supernet_stem16'] if spec.stem_channels == 16 else []) + \
        ['supernet']
    for name in names:
        candidate = load_spec(name)
        if _same_blocks(spec, candidate):
            return candidate, name
    return derived_supernet(spec), f'derived ({SUPERNET_EXPANSION} x C_in ' \
        'per kernel)'


def check_against_supernet(spec: ArchSpec, supernet: ArchSpec) -> None:
    """Raise a one-line :class:`SpecError` unless ``spec`` could come from
    a search of ``supernet``."""
    try:
        spec.check_subnet_of(supernet)
    except SpecError as e:
        raise SpecError(f'{e} (pass the right one with --supernet)') from None


# ---------------------------------------------------------------- drawing
def _kernel_colours(kernels: Sequence[int]) -> Dict[int, str]:
    extra = iter(EXTRA_COLOURS * (len(kernels) // len(EXTRA_COLOURS) + 1))
    return {k: KERNEL_COLOURS.get(k) or next(extra) for k in kernels}


def _kernel_sizes(*specs: ArchSpec) -> List[int]:
    return sorted({k for s in specs for b in s.blocks for k in b.kernels})


def _stages(spec: ArchSpec) -> List[Tuple[int, int, int, int]]:
    """(first block, last block, output channels, network stride) of each
    stage, counting the stem's stride 2."""
    stages, start, stride = [], 0, 2
    for end in spec.stage_ends():
        stride *= max(b.stride for b in spec.blocks[start:end + 1])
        stages.append((start, end, spec.blocks[end].out_channels, stride))
        start = end + 1
    return stages


def _mark_stages(ax, spec: ArchSpec, label: bool) -> None:
    """Shade every other stage, draw the boundaries and, with ``label``,
    write each stage's width and resolution above it."""
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for s, (first, last, channels, stride) in enumerate(_stages(spec)):
        lo, hi = first + FIRST_INDEX - 0.5, last + FIRST_INDEX + 0.5
        if s % 2:
            ax.axvspan(lo, hi, color='0.94', zorder=0, lw=0)
        if first > 0:
            ax.axvline(lo, color='0.55', ls='--', lw=0.8, zorder=1)
        if label:
            # A one-block stage is narrow: smaller text keeps it inside.
            ax.text((lo + hi) / 2, 0.985, f'{channels} ch\nstride {stride}',
                    transform=top, ha='center', va='top',
                    fontsize=8 if last > first else 6.5, color='0.3')


def _finish_x(ax, spec: ArchSpec) -> None:
    n = len(spec.blocks)
    ax.set_xlim(FIRST_INDEX - 0.6, n + FIRST_INDEX - 0.4)
    ax.set_xticks(range(FIRST_INDEX, n + FIRST_INDEX))
    ax.tick_params(axis='x', labelsize=8)
    ax.set_xlabel('block')


def _figure_width(spec: ArchSpec) -> float:
    return max(7.0, 0.42 * len(spec.blocks) + 3.0)


def draw_arch(spec: SpecLike, path: str, title: Optional[str] = None) -> str:
    """Fig. 5: expanded channels of every searchable block, stacked by
    depthwise kernel size.

    Args:
        spec: The architecture (anything :func:`load_spec` accepts).
        path: The PNG to write.
        title: Figure title (default: none beyond the axes' own).

    Returns:
        str: ``path``.
    """
    spec = load_spec(spec)
    kernels = _kernel_sizes(spec)
    colours = _kernel_colours(kernels)
    xs = [i + FIRST_INDEX for i in range(len(spec.blocks))]
    fig, ax = plt.subplots(figsize=(_figure_width(spec), 4.6),
                           layout='constrained')
    _mark_stages(ax, spec, label=True)

    bottom = [0] * len(spec.blocks)
    for k in kernels:
        heights = [b.kernels.get(k, 0) for b in spec.blocks]
        ax.bar(xs, heights, 0.72, bottom=bottom, color=colours[k],
               label=f'{k}x{k}', zorder=2)
        bottom = [b + h for b, h in zip(bottom, heights)]
    peak = max(bottom + [1])
    # Head-room for the stage labels above the tallest bar.
    ax.set_ylim(0, peak * 1.28)
    for x, b, total in zip(xs, spec.blocks, bottom):
        if b.is_identity:
            ax.text(x, peak * 0.01, 'id', ha='center', va='bottom',
                    fontsize=7, color='0.35', rotation=90)
        elif b.stride == 2:
            ax.text(x, total + peak * 0.01, 's2', ha='center', va='bottom',
                    fontsize=7, color='0.2', fontweight='bold')

    _finish_x(ax, spec)
    ax.set_ylabel('expanded channels (atoms)')
    ax.set_title(f'{spec.num_atoms:,} atoms in {len(spec.blocks)} searchable '
                 'blocks; stages: output channels, total stride; s2: '
                 'stride-2 block; id: identity', fontsize=9, color='0.25')
    fig.legend(title='depthwise kernel', ncol=len(kernels), fontsize=8,
               title_fontsize=8, loc='outside lower center', frameon=False)
    ax.spines[['top', 'right']].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def draw_kernel_shares(spec: SpecLike, supernet: SpecLike, path: str,
                       title: Optional[str] = None) -> str:
    """Fig. 6: per block, the share of each kernel among the surviving
    atoms (top) and the share of the supernet's atoms that died, split by
    kernel (bottom).

    Args:
        spec: The searched architecture.
        supernet: The supernet it was searched from (same blocks, at least
            as many atoms of every kernel).
        path: The PNG to write.
        title: Figure title.

    Returns:
        str: ``path``.

    Raises:
        SpecError: ``spec`` is not a sub-net of ``supernet``.
    """
    spec, supernet = load_spec(spec), load_spec(supernet)
    check_against_supernet(spec, supernet)
    kernels = _kernel_sizes(spec, supernet)
    colours = _kernel_colours(kernels)
    xs = [i + FIRST_INDEX for i in range(len(spec.blocks))]
    fig, (top, bot) = plt.subplots(
        2, 1, sharex=True, figsize=(_figure_width(spec), 6.4),
        layout='constrained')

    # Top: composition of what survived, in percent of the block's atoms.
    _mark_stages(top, spec, label=False)
    bottom = [0.0] * len(xs)
    for k in kernels:
        share = [100.0 * b.kernels.get(k, 0) / b.num_atoms if b.num_atoms
                 else 0.0 for b in spec.blocks]
        top.bar(xs, share, 0.72, bottom=bottom, color=colours[k], zorder=2)
        bottom = [b + s for b, s in zip(bottom, share)]
    for x, b in zip(xs, spec.blocks):
        if b.is_identity:
            top.text(x, 50, 'identity', ha='center', va='center',
                     rotation=90, fontsize=7, color='0.35')
    top.set_ylim(0, 100)
    top.set_ylabel('share of surviving\natoms (%)')
    top.set_title('kernel sizes among the surviving atoms', fontsize=9,
                  color='0.25')

    # Bottom: dead atoms per kernel, in percent of the supernet block, so a
    # bar's height is the block's total dead ratio.
    _mark_stages(bot, spec, label=False)
    bottom = [0.0] * len(xs)
    for k in kernels:
        dead = [100.0 * (s.kernels.get(k, 0) - b.kernels.get(k, 0)) /
                s.num_atoms for b, s in zip(spec.blocks, supernet.blocks)]
        bot.bar(xs, dead, 0.72, bottom=bottom, color=colours[k], zorder=2)
        bottom = [b + d for b, d in zip(bottom, dead)]
    for x, total in zip(xs, bottom):
        bot.text(x, total + 1.5, f'{total:.0f}', ha='center', va='bottom',
                 fontsize=7, color='0.2')
    bot.set_ylim(0, 112)
    bot.set_yticks(range(0, 101, 25))
    bot.set_ylabel('dead atoms\n(% of supernet)')
    total_dead = supernet.num_atoms - spec.num_atoms
    bot.set_title(f'atoms removed from the supernet, by kernel size '
                  f'({total_dead:,} of {supernet.num_atoms:,}, '
                  f'{100.0 * total_dead / max(supernet.num_atoms, 1):.1f}%)',
                  fontsize=9, color='0.25')
    _finish_x(bot, spec)
    for ax in (top, bot):
        ax.spines[['top', 'right']].set_visible(False)

    handles = [Patch(color=colours[k], label=f'{k}x{k}') for k in kernels]
    fig.legend(handles=handles, title='depthwise kernel', ncol=len(kernels),
               fontsize=8, title_fontsize=8, loc='outside lower center',
               frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- CLI
def main(argv: Optional[Sequence[str]] = None) -> Tuple[str, str]:
    """Command line entry point; returns the two written paths."""
    parser = argparse.ArgumentParser(
        description='Draw an AtomNAS architecture (paper Fig. 5 and 6)')
    parser.add_argument('spec', help='shipped spec name, spec JSON, search '
                        'checkpoint (.pth with meta["atomnas_spec"]) or '
                        'config')
    parser.add_argument('--supernet', help='the supernet it was searched '
                        'from: shipped name, spec JSON or checkpoint '
                        '(default: supernet_stem16 / supernet when the '
                        'blocks match, '
                        'else 6 x C_in atoms per kernel 3/5/7)')
    parser.add_argument('--out-dir', help='where to write the PNGs (default: '
                        'next to the input file, or the current folder)')
    parser.add_argument('--show-title', metavar='TEXT',
                        help='title of both figures (default: the name)')
    args = parser.parse_args(argv)

    try:
        spec, name, out_dir = read_input(args.spec)
        if args.supernet:
            supernet, _, _ = read_input(args.supernet)
            super_name = args.supernet
        else:
            supernet, super_name = default_supernet(spec)
        check_against_supernet(spec, supernet)
    except SpecError as e:
        sys.exit(f'error: {e}')
    out_dir = args.out_dir or out_dir
    os.makedirs(out_dir, exist_ok=True)
    title = args.show_title if args.show_title is not None else name
    arch_png = draw_arch(spec, osp.join(out_dir, f'{name}_arch.png'), title)
    shares_png = draw_kernel_shares(
        spec, supernet, osp.join(out_dir, f'{name}_kernels.png'), title)
    print(f'supernet: {super_name}')
    print(arch_png)
    print(shares_png)
    return arch_png, shares_png


if __name__ == '__main__':
    main()
