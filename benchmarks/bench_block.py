"""CPU speed of AtomNAS's searchable block, its full nets and depthwise convs.

Three sections, all in one run:

1. ``block``: one training step (forward + backward, loss = sum of the
   output) of a supernet block, for four implementations of the same maths:

   * ``ours-CL``: :class:`AtomicBlock` in channels_last (the reference);
   * ``ours-contig``: the same block in the default contiguous format;
   * ``authors-CL`` / ``authors-contig``: the authors' layout, one full
     inverted-residual branch per kernel, branch outputs summed;
   * ``timm-CL`` / ``timm-contig``: one expand conv, timm's ``MixedConv2d``
     for the depthwise part, one BN over all expanded channels.

2. ``net``: eval-mode forward of the whole backbone (``AtomNASNet``) for the
   supernet and ``atomnas_c`` in both memory formats, as ms per GMAC, so that
   a searched net whose odd channel counts run slower than its MACs predict
   shows up as a ratio above 1.

3. ``dw``: a standalone depthwise conv (144 channels, 32x32) forward +
   backward for k = 3, 5, 7, channels_last against contiguous.

Absolute times on a small shared CPU are noisy, so the script prints ratios.
Candidates are timed round-robin (one repetition of each in turn, starting
at a different candidate every round) and each ratio is the median over
rounds of the two candidates' times *in the same round*, so slow phases of
the machine hit both sides of a ratio alike (:mod:`atomnas_mm.utils.timing`,
which every benchmark and the latency tool use).

Run::

    .venv/bin/python benchmarks/bench_block.py            # all sections
    .venv/bin/python benchmarks/bench_block.py --quick    # smoke test
    .venv/bin/python benchmarks/bench_block.py --sections block --reps 9
"""
from __future__ import annotations

import argparse
import gc
from typing import Callable, List, Sequence, Tuple

import torch
from torch import nn

from atomnas_mm.models.arch.cost import count
from atomnas_mm.models.arch.spec import BlockSpec
from atomnas_mm.models.backbones.atomnas import AtomNASNet
from atomnas_mm.models.layers import AtomicBlock
from atomnas_mm.utils.timing import (add_common_args, calibrate_bn, median,
                                     paired_ratio, run_sections, spread,
                                     time_round_robin)

try:  # timm >= 0.9 moved the layers; older releases keep the old path.
    from timm.layers import MixedConv2d
except ImportError:  # pragma: no cover
    try:
        from timm.models.layers import MixedConv2d
    except ImportError:
        MixedConv2d = None

CL = torch.channels_last
CONTIG = torch.contiguous_format
FORMATS = {'CL': CL, 'contig': CONTIG}

# (Cin, Cout, stride, input side): representative supernet blocks, one per
# resolution, the last one a stride-2 block without residual.
BLOCK_CASES: List[Tuple[int, int, int, int]] = [
    (24, 24, 1, 56),
    (40, 40, 1, 28),
    (80, 80, 1, 14),
    (96, 192, 2, 14),
]
KERNELS = (3, 5, 7)
EXPANSION = 6  # per kernel, as in the supernet


# --------------------------------------------------------------------- blocks
def conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1,
            groups: int = 1) -> List[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups,
                      bias=False), nn.BatchNorm2d(cout)]


class AuthorsBlock(nn.Module):
    """The authors' layout: a full inverted-residual branch per kernel.

    Each branch is 1x1 expand (Cin -> E_k) + BN + ReLU, depthwise k x k +
    BN + ReLU, 1x1 project (E_k -> Cout) + BN; the branch outputs are summed
    (+ the input when stride is 1 and Cin == Cout). Same MACs as
    :class:`AtomicBlock` but three project BNs instead of one.

    Args:
        spec: Channels, stride and expanded channels per kernel.
    """

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.has_residual = spec.has_residual
        self.branches = nn.ModuleList()
        for k, e in spec.kernels.items():
            self.branches.append(nn.Sequential(
                *conv_bn(spec.in_channels, e), nn.ReLU(inplace=True),
                *conv_bn(e, e, k, spec.stride, groups=e),
                nn.ReLU(inplace=True),
                *conv_bn(e, spec.out_channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.branches[0](x)
        for branch in self.branches[1:]:
            y = y + branch(x)
        return y + x if self.has_residual else y


class TimmMixBlock(nn.Module):
    """Inverted residual with timm's ``MixedConv2d`` as the depthwise part.

    1x1 expand (Cin -> E) + BN + ReLU, MixedConv2d (E split equally over the
    kernels) + one BN + ReLU over all E channels, 1x1 project + BN
    (+ residual). ``MixedConv2d`` splits channels equally, so E = 3 * 6 * Cin
    matches the supernet's 6 * Cin per kernel.

    Args:
        spec: Channels, stride and expanded channels per kernel (all equal).
    """

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        e = spec.num_atoms
        self.has_residual = spec.has_residual
        self.body = nn.Sequential(
            *conv_bn(spec.in_channels, e), nn.ReLU(inplace=True),
            MixedConv2d(e, e, kernel_size=list(spec.kernels),
                        stride=spec.stride, depthwise=True),
            nn.BatchNorm2d(e), nn.ReLU(inplace=True),
            *conv_bn(e, spec.out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y + x if self.has_residual else y


def train_step(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """A closure doing one forward + backward with loss = output sum.

    The input requires grad, as a block inside a net would: its backward
    then also computes the input gradient of the expand conv.
    """
    def step() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).sum().backward()
    return step


def bench_blocks(args: argparse.Namespace) -> None:
    """Section 1: train step of one supernet block per implementation."""
    print(f'\n== 1. block train step (fwd + bwd), batch {args.batch}, '
          f'kernels {KERNELS} x {EXPANSION}*Cin each ==')
    builders = {
        'ours': lambda s: AtomicBlock(s),
        'authors': AuthorsBlock,
    }
    if MixedConv2d is not None:
        builders['timm'] = TimmMixBlock
    else:
        print('timm not importable: timm candidates skipped')
    names = [f'{b}-{f}' for b in builders for f in FORMATS]
    ref = 'ours-CL'
    rows = []  # (case, times), printed as two tables at the end
    for cin, cout, stride, side in BLOCK_CASES:
        spec = BlockSpec(cin, cout, stride,
                         {k: EXPANSION * cin for k in KERNELS})
        torch.manual_seed(0)
        base = torch.randn(args.batch, cin, side, side)
        candidates = {}
        for bname, build in builders.items():
            for fname, fmt in FORMATS.items():
                m = build(spec).train().to(memory_format=fmt)
                x = base.contiguous(memory_format=fmt).requires_grad_(True)
                candidates[f'{bname}-{fname}'] = train_step(m, x)
        times = time_round_robin(candidates, args.reps, args.warmup)
        case = f'{cin}->{cout} s{stride} {side}x{side}'
        rows.append((case, times))
        print(f'  done {case}: ours-CL {median(times[ref]):.1f} ms',
              flush=True)
        del candidates
        gc.collect()
    width = max(len(n) for n in names) + 2
    print('median ms per step')
    print(f'{"case":<20}' + ''.join(f'{n:>{width}}' for n in names))
    for case, times in rows:
        print(f'{case:<20}' +
              ''.join(f'{median(times[n]):>{width}.1f}' for n in names))
    print(f'time / time of {ref} (median over rounds of same-round ratios; '
          '>1: slower)')
    print(f'{"case":<20}' + ''.join(f'{n:>{width}}' for n in names))
    for case, times in rows:
        print(f'{case:<20}' + ''.join(
            f'{paired_ratio(times, n, ref):>{width}.2f}' for n in names))
    max_spread = max(spread(t) for _, times in rows for t in times.values())
    print(f'largest (max - min) / median of one candidate: {max_spread:.0f}%')


# --------------------------------------------------------------------- nets
def bench_nets(args: argparse.Namespace) -> None:
    """Section 2: eval forward of the full backbones, ms per GMAC."""
    archs = ('supernet', 'atomnas_c')
    side = 224
    print(f'\n== 2. full backbone forward (eval, no_grad), batch '
          f'{args.net_batch}, {side}x{side} ==')
    # AtomNASNet has no classifier, so MACs are counted without one.
    gmacs = {a: count(a, side, num_classes=0).macs / 1e9 for a in archs}
    torch.manual_seed(0)
    base = torch.randn(args.net_batch, 3, side, side)
    candidates = {}
    for arch in archs:
        for fname, fmt in FORMATS.items():
            name = f'{arch}-{fname}'
            net = AtomNASNet(arch=arch, memory_format='channels_last'
                             if fmt is CL else 'contiguous')
            net.init_weights()
            x = base.contiguous(memory_format=fmt)
            calibrate_bn(net, x)

            def fwd(net=net, x=x) -> None:
                with torch.no_grad():
                    net(x)
            candidates[name] = fwd
    times = time_round_robin(candidates, args.reps, args.warmup)
    print('MACs counted for the backbone only (num_classes=0), batch 1: ' +
          ', '.join(f'{a} {gmacs[a]:.3f} G' for a in archs))
    print(f'{"candidate":<22}{"median ms":>12}{"ms/GMAC":>12}{"spread%":>10}')
    per_gmac = {}
    for name, t in times.items():
        arch = name.rsplit('-', 1)[0]
        per_gmac[name] = [v / (gmacs[arch] * args.net_batch) for v in t]
        print(f'{name:<22}{median(t):>12.1f}{median(per_gmac[name]):>12.2f}'
              f'{spread(t):>10.0f}')
    for fname in FORMATS:
        r = paired_ratio(per_gmac, f'atomnas_c-{fname}', f'supernet-{fname}')
        print(f'(ms/GMAC atomnas_c) / (ms/GMAC supernet), {fname:<6}: {r:.2f}')
    for arch in archs:
        r = paired_ratio(times, f'{arch}-CL', f'{arch}-contig')
        print(f'{arch:<10} channels_last / contiguous time: {r:.2f}')
    del candidates
    gc.collect()


# --------------------------------------------------------------------- dw
def bench_depthwise(args: argparse.Namespace) -> None:
    """Section 3: a lone depthwise conv, channels_last vs contiguous."""
    c, side = 144, 32
    print(f'\n== 3. depthwise conv fwd + bwd, {c} ch, {side}x{side}, batch '
          f'{args.dw_batch} ==')
    print(f'{"kernel":<8}{"CL ms":>10}{"contig ms":>12}{"CL/contig":>12}')
    for k in KERNELS:
        torch.manual_seed(0)
        base = torch.randn(args.dw_batch, c, side, side)
        candidates = {}
        for fname, fmt in FORMATS.items():
            conv = nn.Conv2d(c, c, k, 1, k // 2, groups=c, bias=False)
            conv = conv.to(memory_format=fmt)
            x = base.contiguous(memory_format=fmt).requires_grad_(True)
            candidates[fname] = train_step(conv, x)
        times = time_round_robin(candidates, args.reps, args.warmup)
        print(f'{k:<8}{median(times["CL"]):>10.1f}'
              f'{median(times["contig"]):>12.1f}'
              f'{paired_ratio(times, "CL", "contig"):>12.2f}', flush=True)


# --------------------------------------------------------------------- main
SECTIONS = {'block': bench_blocks, 'net': bench_nets, 'dw': bench_depthwise}


def parse_args(argv: Sequence[str] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch', type=int, default=32,
                   help='batch of the block train step (section 1)')
    p.add_argument('--net-batch', type=int, default=8,
                   help='batch of the full-net forward (section 2)')
    p.add_argument('--dw-batch', type=int, default=64,
                   help='batch of the depthwise conv (section 3)')
    add_common_args(p, SECTIONS, reps=5,
                    quick='smoke test: tiny batches, 2 reps, 1 warmup')
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.net_batch, args.dw_batch = 2, 1, 4
        args.reps, args.warmup = 2, 1
    return args


def main(argv: Sequence[str] = None) -> None:
    run_sections(parse_args(argv), SECTIONS)


if __name__ == '__main__':
    main()
