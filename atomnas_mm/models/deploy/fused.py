"""The fused inference form of an AtomNAS net.

Every BN is folded into the conv before it (the project BN of an atomic
block into all of its project convs, which it follows through their sum),
identity blocks leave (their constant joins the previous block's bias), and
each kernel's atoms can be padded with zero atoms to a multiple of
``divisor``: a zero atom has zero expand weights and bias, so its
activation is ``act(0) = 0`` (ReLU and Swish), its depthwise output is 0 again,
and its project weights are zero, so the net computes exactly the same
function with hardware-friendly widths. With SE, the padded channels' reduce
weights are zero and their gates multiply zeros, so SE is exact too.

An atomic block's three stages can each be one conv over all atoms
(``'merged'``) or one conv per kernel (``'split'``):

* ``expand``: one 1x1 conv Cin -> E, or one per kernel;
* ``depthwise``: one depthwise conv whose smaller kernels are zero-padded
  to the largest (more MACs, fewer ops), or one conv per kernel;
* ``project``: one 1x1 conv over the concatenated atoms, or one per kernel,
  summed.

A merged depthwise conv needs merged expand and project convs. Which
layout runs fastest was measured (``benchmarks/bench_deploy.py``);
:data:`DEPLOY_DEFAULTS` holds the result.
"""
from __future__ import annotations

import copy
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from ..arch.spec import BlockSpec
from ..layers import AtomicBlock, FirstBlock, IdentityBlock, SqueezeExcite
from .fold import (FuseError, bn_scale_shift, fold_conv_bn, group_sizes,
                   pad_kernel, pad_to)

LAYOUTS = ('merged', 'split')
# The measured-fastest form (benchmarks/bench_deploy.py, section layouts;
# figures in benchmarks/README.md): on 2 CPU cores, AtomNAS-C, one conv per
# stage ran 0.48-0.50x the unfused time at batch 1 in PyTorch, one conv per
# kernel 0.63-0.79x; padding to 8 halves onnxruntime's time (NCHWc kernels
# need multiples of 8 channels on AVX2) and never slows PyTorch; 16 gains
# nothing over 8.
DEPLOY_DEFAULTS = dict(divisor=8, expand='merged', depthwise='merged',
                       project='merged')
# onnxruntime (NCHWc kernels, conv + activation + add fused by its graph
# optimiser, less per-node overhead) preferred one conv per kernel: at
# batch 1 0.28-0.43x the unfused time against 0.40-0.47x merged (three
# runs), tied at batch 8. tools/deployment/pytorch2onnx.py uses this.
ONNX_DEFAULTS = dict(divisor=8, expand='split', depthwise='split',
                     project='split')


def check_layout(expand: str, depthwise: str, project: str,
                 divisor: int) -> None:
    """Raise ValueError for an unknown or impossible layout."""
    for name, value in (('expand', expand), ('depthwise', depthwise),
                        ('project', project)):
        if value not in LAYOUTS:
            raise ValueError(f'{name} must be one of {LAYOUTS}, got '
                             f'{value!r}')
    if depthwise == 'merged' and (expand, project) != ('merged', 'merged'):
        raise ValueError('depthwise=merged (one conv over all atoms) needs '
                         'expand=merged and project=merged')
    if not isinstance(divisor, int) or isinstance(divisor, bool) or \
            divisor < 1:
        raise ValueError(f'divisor must be a positive int, got {divisor!r}')


def make_conv(weight: torch.Tensor, bias: Optional[torch.Tensor],
              like: torch.Tensor, stride: int = 1, groups: int = 1
              ) -> nn.Conv2d:
    """A conv holding ``weight`` / ``bias`` (float64 in, cast to ``like``'s
    dtype and device), padding ``k // 2``."""
    cout, cin_g, k, _ = weight.shape
    conv = nn.Conv2d(cin_g * groups, cout, k, stride, k // 2, groups=groups,
                     bias=bias is not None, device='meta')
    conv.weight = nn.Parameter(weight.to(like.dtype).to(like.device))
    if bias is not None:
        conv.bias = nn.Parameter(bias.to(like.dtype).to(like.device))
    return conv


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.Module, where: str) -> nn.Conv2d:
    """One conv computing ``bn(conv(x))`` in eval mode."""
    w, b = fold_conv_bn(conv.weight, bn, conv.bias, where)
    fused = make_conv(w, b, conv.weight, conv.stride[0], conv.groups)
    fused.padding = conv.padding
    return fused


def fuse_conv_bn_act(seq: nn.Sequential, where: str) -> nn.Sequential:
    """(conv, BN, act) -> (conv with bias, act): the stem and the head."""
    conv, bn, act = seq
    return nn.Sequential(fuse_conv_bn(conv, bn, f'{where}.1'),
                         copy.deepcopy(act))


class FusedFirstBlock(nn.Module):
    """The fixed first block with its BNs folded: depthwise conv + bias ->
    act -> [SE] -> 1x1 project + bias [+ x]."""

    def __init__(self, block: FirstBlock, where: str = 'first') -> None:
        super().__init__()
        self.dw_conv = fuse_conv_bn(block.dw_conv, block.dw_bn,
                                    f'{where}.dw_bn')
        self.act = copy.deepcopy(block.act)
        self.se = copy.deepcopy(block.se)
        self.project_conv = fuse_conv_bn(block.project_conv, block.project_bn,
                                         f'{where}.project_bn')
        self.has_residual = block.has_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.dw_conv(x))
        if self.se is not None:
            y = self.se([y])[0]
        y = self.project_conv(y)
        return y + x if self.has_residual else y


class FusedAtomicBlock(nn.Module):
    """An :class:`AtomicBlock` with its BNs folded, in the given layout,
    its atoms padded to multiples of ``divisor`` (see the module docstring).

    Args:
        block: The block to fuse (eval-mode BN statistics are used).
        divisor: Pad each kernel's atoms (the total with an all-merged
            layout) to a multiple of this; 1 pads nothing.
        expand, depthwise, project: ``'merged'`` or ``'split'``.
        extra_bias: A (Cout,) constant added to the output (the constants
            of identity blocks that followed this block).
        where: The block's name in error messages.
    """

    def __init__(self, block: AtomicBlock, divisor: int = 8,
                 expand: str = 'split', depthwise: str = 'split',
                 project: str = 'split',
                 extra_bias: Optional[torch.Tensor] = None,
                 where: str = 'block') -> None:
        super().__init__()
        check_layout(expand, depthwise, project, divisor)
        self.in_channels = block.in_channels
        self.out_channels = block.out_channels
        self.stride = block.stride
        self.has_residual = block.has_residual
        self.real_kernels: Dict[int, int] = dict(block.kernels)
        self.layout = (expand, depthwise, project)
        self.divisor = divisor
        self.act = copy.deepcopy(block.act)
        # dtype and device of the fused weights: those of the block's.
        like = next(iter(block.branches.values())).dw_conv.weight

        branches = list(block.branches.items())
        kernels = [b.kernel_size for _, b in branches]
        kmax = max(kernels)
        groups = group_sizes([b.channels for _, b in branches], divisor,
                             per_kernel=depthwise == 'split')
        self.group_sizes: List[int] = groups
        self.padded_kernels = {k: g for k, g in zip(kernels, groups)}

        scale_p, shift_p = bn_scale_shift(block.project_bn,
                                          f'{where}.project_bn')
        bias_p = shift_p if extra_bias is None else \
            shift_p + extra_bias.detach().double().to(shift_p.device)
        we, be, wd, bd, wp = [], [], [], [], []
        for (name, b), g in zip(branches, groups):
            w, bias = fold_conv_bn(b.expand_conv.weight, b.expand_bn,
                                   where=f'{where}.branches.{name}.expand_bn')
            we.append(pad_to(w, g))
            be.append(pad_to(bias, g))
            w, bias = fold_conv_bn(b.dw_conv.weight, b.dw_bn,
                                   where=f'{where}.branches.{name}.dw_bn')
            if depthwise == 'merged':
                w = pad_kernel(w, kmax)
            wd.append(pad_to(w, g))
            bd.append(pad_to(bias, g))
            w = b.project_conv.weight.detach().double() * \
                scale_p.view(-1, 1, 1, 1)
            wp.append(pad_to(w, g, dim=1))

        s = self.stride
        if expand == 'merged':
            self.expand = make_conv(torch.cat(we), torch.cat(be), like)
        else:
            self.expand = nn.ModuleList(
                [make_conv(w, b, like) for w, b in zip(we, be)])
        if depthwise == 'merged':
            e = sum(groups)
            self.dw = make_conv(torch.cat(wd), torch.cat(bd), like, s, e)
        else:
            self.dw = nn.ModuleList([make_conv(w, b, like, s, w.shape[0])
                                     for w, b in zip(wd, bd)])
        if project == 'merged':
            self.project = make_conv(torch.cat(wp, 1), bias_p, like)
        else:
            self.project = nn.ModuleList(
                [make_conv(w, bias_p if i == 0 else None, like)
                 for i, w in enumerate(wp)])
        self.se = self._pad_se(block.se, [b.channels for _, b in branches],
                               groups) if block.se is not None else None

    @staticmethod
    def _pad_se(se: SqueezeExcite, sizes: Sequence[int],
                groups: Sequence[int]) -> SqueezeExcite:
        """SE over the padded channels: zero reduce weights and zero expand
        weights and biases for the zero atoms (whose gates multiply 0)."""
        if list(sizes) == list(groups):
            return copy.deepcopy(se)
        sq = se.reduce.out_channels
        out = copy.deepcopy(se)
        out.reduce = nn.Conv2d(sum(groups), sq, 1, bias=True, device='meta')
        out.expand = nn.Conv2d(sq, sum(groups), 1, bias=True, device='meta')
        rw = se.reduce.weight.detach().split(list(sizes), 1)
        ew = se.expand.weight.detach().split(list(sizes), 0)
        eb = se.expand.bias.detach().split(list(sizes), 0)
        out.reduce.weight = nn.Parameter(torch.cat(
            [pad_to(w, g, 1) for w, g in zip(rw, groups)], 1).clone())
        out.reduce.bias = nn.Parameter(se.reduce.bias.detach().clone())
        out.expand.weight = nn.Parameter(torch.cat(
            [pad_to(w, g) for w, g in zip(ew, groups)]).clone())
        out.expand.bias = nn.Parameter(torch.cat(
            [pad_to(b, g) for b, g in zip(eb, groups)]).clone())
        return out

    # ----------------------------------------------------------- queries
    @property
    def kernels(self) -> Dict[int, int]:
        """Kernel size -> real atoms (padding excluded)."""
        return dict(self.real_kernels)

    def spec(self) -> BlockSpec:
        return BlockSpec(self.in_channels, self.out_channels, self.stride,
                         self.kernels)

    def importance_bns(self) -> Dict[int, nn.Module]:
        return {}

    # ----------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, Cin, H, W) -> (N, Cout, H / stride, W / stride)."""
        act = self.act
        if isinstance(self.expand, nn.Conv2d):
            e = act(self.expand(x))
            if isinstance(self.dw, nn.Conv2d):
                hidden = [act(self.dw(e))]
            elif len(self.dw) == 1:
                hidden = [act(self.dw[0](e))]
            else:
                hidden = [act(dw(t)) for dw, t in
                          zip(self.dw, e.split(self.group_sizes, 1))]
        else:
            hidden = [act(dw(act(ex(x))))
                      for ex, dw in zip(self.expand, self.dw)]
        if self.se is not None:
            hidden = self.se(hidden)
        if isinstance(self.project, nn.Conv2d):
            y = self.project(hidden[0] if len(hidden) == 1
                             else torch.cat(hidden, 1))
        else:
            y = self.project[0](hidden[0])
            for p, h in zip(self.project[1:], hidden[1:]):
                y = y + p(h)
        return y + x if self.has_residual else y

    def extra_repr(self) -> str:
        e, d, p = self.layout
        return (f'{self.in_channels}->{self.out_channels}, stride '
                f'{self.stride}, atoms {self.real_kernels} padded to '
                f'{self.padded_kernels}, expand={e}, depthwise={d}, '
                f'project={p}')


def fuse_blocks(blocks: Sequence[nn.Module], stage_ends: Sequence[int],
                divisor: int, expand: str, depthwise: str, project: str
                ) -> List[nn.Module]:
    """The fused form of a net's searchable blocks, same length and indices.

    An identity block's constant joins the bias of the atomic block before
    it when that block's output is not a stage output (nothing reads it but
    the identity); the identity then becomes ``nn.Identity``. Otherwise it
    stays an :class:`IdentityBlock` (one add): in a valid spec that is only
    an identity block right after the first block (a stage starts at a
    block without residual, so no identity block follows a stage end).
    """
    extra: Dict[int, torch.Tensor] = {}
    owner: List[Optional[int]] = [None] * len(blocks)
    for i, b in enumerate(blocks):
        if not isinstance(b, IdentityBlock) or i == 0:
            continue
        prev = i - 1
        j = owner[prev] if isinstance(blocks[prev], IdentityBlock) else prev
        if j is None or not isinstance(blocks[j], AtomicBlock) or \
                any(j <= e < i for e in stage_ends):
            continue
        owner[i] = j
        bias = b.bias.detach().double()
        extra[j] = extra[j] + bias if j in extra else bias
    out: List[nn.Module] = []
    for i, b in enumerate(blocks):
        if isinstance(b, AtomicBlock):
            out.append(FusedAtomicBlock(b, divisor, expand, depthwise,
                                        project, extra.get(i),
                                        where=f'blocks.{i}'))
        elif isinstance(b, IdentityBlock):
            out.append(nn.Identity() if owner[i] is not None
                       else copy.deepcopy(b))
        else:
            raise FuseError(f'blocks.{i}: cannot fuse a '
                            f'{type(b).__name__}')
    return out


__all__ = ['DEPLOY_DEFAULTS', 'FuseError', 'ONNX_DEFAULTS', 'FusedAtomicBlock',
           'FusedFirstBlock', 'check_layout', 'fuse_blocks',
           'fuse_conv_bn', 'fuse_conv_bn_act']
