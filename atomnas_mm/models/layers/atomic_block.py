"""The searchable block of AtomNAS and its one shape-changing operation.

Layout (``E = sum of the kernels' expanded channels``)::

    x -> 1x1 expand (Cin -> E) -> BN -> act
      -> split E by kernel -> depthwise k x k on each slice -> BN -> act
      -> concat -> [SE] -> 1x1 project (E -> Cout) -> BN  [+ x]

Each kernel's slices of the expand and project convs are stored as that
kernel's own convs (:class:`AtomBranch`), and the project is a sum over
kernels instead of a conv over a concatenation: the same function, without
the split/concat copies.

One *atom* is one expanded channel of one kernel; its importance is the
gamma of the depthwise BN on that channel. :meth:`AtomicBlock.keep_atoms`
is the only way the block changes shape.
"""
from __future__ import annotations

from typing import Dict, List, Mapping

import torch
from mmcv.cnn import build_norm_layer
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..arch.spec import BlockSpec
from .se import SqueezeExcite
from .surgery import ParamSlice, drop_params, slice_bn, slice_param


def make_act(name: str) -> nn.Module:
    """``'relu'`` -> ReLU, ``'swish'`` -> SiLU (Swish with beta 1)."""
    if name == 'relu':
        return nn.ReLU(inplace=True)
    if name == 'swish':
        return nn.SiLU(inplace=True)
    raise ValueError(f'unknown activation {name!r} (expected relu or swish)')


class AtomBranch(nn.Module):
    """The atoms of one kernel size: their slice of the expand conv, their
    depthwise conv and their slice of the project conv.

    Holding each kernel's slices as separate convs computes exactly the
    same function as one expand conv split by kernel and one project conv
    over the concatenation, without the split and concat copies (measured
    in ``benchmarks/bench_block.py``); the spec and the atoms are the same.
    """

    def __init__(self, in_channels: int, channels: int, out_channels: int,
                 kernel_size: int, stride: int, norm_cfg: dict) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.expand_conv = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.expand_bn = build_norm_layer(norm_cfg, channels)[1]
        self.dw_conv = nn.Conv2d(channels, channels, kernel_size, stride,
                                 kernel_size // 2, groups=channels, bias=False)
        self.dw_bn = build_norm_layer(norm_cfg, channels)[1]
        self.project_conv = nn.Conv2d(channels, out_channels, 1, bias=False)

    @property
    def channels(self) -> int:
        return self.dw_conv.out_channels

    def expand(self, x: torch.Tensor, act: nn.Module) -> torch.Tensor:
        """(N, Cin, H, W) -> (N, n, H / s, W / s): the atoms' activations."""
        x = act(self.expand_bn(self.expand_conv(x)))
        return act(self.dw_bn(self.dw_conv(x)))

    @torch.no_grad()
    def keep(self, index: torch.Tensor, record: List[ParamSlice]) -> None:
        """Keep the atoms at ``index`` (sorted, within this branch)."""
        slice_param(self.expand_conv, 'weight', 0, index, record)
        slice_bn(self.expand_bn, index, record)
        slice_param(self.dw_conv, 'weight', 0, index, record)
        slice_bn(self.dw_bn, index, record)
        slice_param(self.project_conv, 'weight', 1, index, record)
        n = len(index)
        self.expand_conv.out_channels = n
        self.dw_conv.in_channels = self.dw_conv.out_channels = n
        self.dw_conv.groups = n
        self.project_conv.in_channels = n


class AtomicBlock(nn.Module):
    """A searchable block built from a :class:`BlockSpec`.

    Args:
        spec: Channels, stride and atoms per kernel.
        act: ``'relu'`` or ``'swish'``.
        se_channels: Squeeze width of SE on the expanded channels (0: none).
        norm_cfg: Config of every BN in the block (mmcv's ``build_norm_layer``).
    """

    def __init__(self, spec: BlockSpec, act: str = 'relu',
                 se_channels: int = 0,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        self.in_channels = spec.in_channels
        self.out_channels = spec.out_channels
        self.stride = spec.stride
        self.has_residual = spec.has_residual
        self.act_name = act
        self.is_identity = spec.is_identity
        if self.is_identity:
            return
        # Keys 'k3', 'k5', ...: a kernel that dies leaves without renaming
        # the others (checkpoint keys stay readable and stable).
        self.branches = nn.ModuleDict({
            f'k{k}': AtomBranch(self.in_channels, n, self.out_channels, k,
                                self.stride, norm_cfg)
            for k, n in spec.kernels.items()
        })
        self.act = make_act(act)
        self.se = SqueezeExcite(spec.num_atoms, se_channels, make_act(act)) \
            if se_channels else None
        self.project_bn = build_norm_layer(norm_cfg, self.out_channels)[1]

    # ----------------------------------------------------------- queries
    @property
    def kernels(self) -> Dict[int, int]:
        """Kernel size -> live atoms, ascending kernel order."""
        if self.is_identity:
            return {}
        return {b.kernel_size: b.channels for b in self.branches.values()}

    def spec(self) -> BlockSpec:
        return BlockSpec(self.in_channels, self.out_channels, self.stride,
                         self.kernels)

    def importance_bns(self) -> Dict[int, nn.Module]:
        """Kernel size -> the BN whose gamma is that kernel's atoms'
        importance."""
        if self.is_identity:
            return {}
        return {b.kernel_size: b.dw_bn for b in self.branches.values()}

    # ----------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, Cin, H, W) -> (N, Cout, H / stride, W / stride)."""
        if self.is_identity:
            return x
        branches = list(self.branches.values())
        hidden = [b.expand(x, self.act) for b in branches]
        if self.se is not None:
            hidden = self.se(hidden)
        y = branches[0].project_conv(hidden[0])
        for b, h in zip(branches[1:], hidden[1:]):
            y = y + b.project_conv(h)
        y = self.project_bn(y)
        if self.has_residual:
            y = y + x
        return y

    # ----------------------------------------------------------- surgery
    @torch.no_grad()
    def keep_atoms(self, keep: Mapping[int, torch.Tensor]) -> List[ParamSlice]:
        """Keep only the given atoms; remove the rest physically.

        The removed atoms' constant output (their activated depthwise-BN
        beta, exact when their gamma is 0) is pushed through the project
        conv and folded into the project BN's running mean, so the block's
        eval-mode output does not change. In train mode BN subtracts the
        batch mean, which already cancels a constant. (With SE the removed
        channels are gated by an input-dependent factor, so the fold is
        skipped.)

        Args:
            keep: Kernel size -> indices (within that kernel's atoms) of the
                atoms to keep. A kernel missing from ``keep`` or with no
                indices leaves the block. Keeping nothing turns a residual
                block into the identity.

        Returns:
            list[ParamSlice]: every parameter replaced or dropped, so that
            owners of per-parameter state (optimizers) can follow.
        """
        if self.is_identity:
            return []
        unknown = set(keep) - set(self.kernels)
        if unknown:
            raise ValueError(
                f'keep_atoms: block has no kernel {sorted(unknown)}')
        dev = self.project_bn.running_mean.device \
            if self.project_bn.running_mean is not None else 'cpu'
        plan = {}  # kernel -> (kept, removed) indices within the branch
        for k, n in self.kernels.items():
            idx = keep.get(k)
            idx = torch.as_tensor(
                idx if idx is not None else [], dtype=torch.long,
                device=dev).unique()
            if len(idx) and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f'keep_atoms: index out of range for kernel '
                                 f'{k} with {n} atoms')
            mask = torch.ones(n, dtype=torch.bool, device=dev)
            mask[idx] = False
            plan[k] = (idx, mask.nonzero().flatten())
        if not any(len(r) for _, r in plan.values()):
            return []
        if not any(len(i) for i, _ in plan.values()) and not self.has_residual:
            raise ValueError('keep_atoms: a block without residual must keep '
                             'at least one atom')

        bn = self.project_bn
        if self.se is None and isinstance(bn, _BatchNorm) and \
                bn.track_running_stats:
            for k, (_, removed) in plan.items():
                branch = self.branches[f'k{k}']
                if len(removed) and branch.dw_bn.affine:
                    const = self.act(branch.dw_bn.bias[removed].clone())
                    w = branch.project_conv.weight[:, removed, 0, 0]
                    bn.running_mean -= w @ const

        record: List[ParamSlice] = []
        if not any(len(i) for i, _ in plan.values()):
            # Every atom died: the block becomes the identity.
            for name in ('branches', 'se', 'project_bn'):
                if getattr(self, name) is not None:
                    drop_params(getattr(self, name), record)
                delattr(self, name)
            self.is_identity = True
            return record

        if self.se is not None:
            kept_global, start = [], 0
            for k, (kept, _) in plan.items():
                kept_global.append(kept + start)
                start += self.kernels[k]
            kept_global = torch.cat(kept_global)
            self.se.keep_channels(kept_global, record)
        for k, (kept, removed) in plan.items():
            if not len(removed):
                continue
            branch = self.branches[f'k{k}']
            if not len(kept):
                drop_params(branch, record)
                del self.branches[f'k{k}']
            else:
                branch.keep(kept, record)
        return record
