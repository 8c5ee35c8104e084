"""The searchable block of AtomNAS and its one shape-changing operation.

Layout (``E = sum of the kernels' expanded channels``)::

    x -> 1x1 expand (Cin -> E) -> BN -> act
      -> split E by kernel -> depthwise k x k on each slice -> BN -> act
      -> concat -> [SE] -> 1x1 project (E -> Cout) -> BN  [+ x]

One *atom* is one expanded channel of one kernel; its importance is the
gamma of the depthwise BN on that channel. :meth:`AtomicBlock.keep_atoms`
is the only way the block changes shape.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional

import torch
from mmcv.cnn import build_norm_layer
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..arch.spec import BlockSpec
from .se import SqueezeExcite


def make_act(name: str) -> nn.Module:
    """``'relu'`` -> ReLU, ``'swish'`` -> SiLU (Swish with beta 1)."""
    if name == 'relu':
        return nn.ReLU(inplace=True)
    if name == 'swish':
        return nn.SiLU(inplace=True)
    raise ValueError(f'unknown activation {name!r} (expected relu or swish)')


@dataclass
class ParamSlice:
    """A parameter replaced by a slice of itself.

    Attributes:
        old: The parameter before the change (still referenced by
            optimizers and wrappers until they are updated).
        new: Its replacement, or None when the parameter left the model.
        dim: The sliced dimension.
        index: Kept indices along ``dim``.
    """
    old: nn.Parameter
    new: Optional[nn.Parameter]
    dim: int
    index: torch.Tensor


class DepthwiseBranch(nn.Module):
    """Depthwise k x k conv + BN over one kernel's slice of channels."""

    def __init__(self, channels: int, kernel_size: int, stride: int,
                 norm_cfg: dict) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv2d(channels, channels, kernel_size, stride,
                              kernel_size // 2, groups=channels, bias=False)
        self.bn = build_norm_layer(norm_cfg, channels)[1]

    @property
    def channels(self) -> int:
        return self.conv.out_channels


def _slice_param(module: nn.Module, name: str, dim: int, index: torch.Tensor,
                 record: List[ParamSlice]) -> None:
    old = getattr(module, name)
    data = old.detach().index_select(dim, index)
    if old.dim() == 4 and old.is_contiguous(memory_format=torch.channels_last):
        data = data.contiguous(memory_format=torch.channels_last)
    new = nn.Parameter(data.clone(memory_format=torch.preserve_format),
                       requires_grad=old.requires_grad)
    setattr(module, name, new)
    record.append(ParamSlice(old, new, dim, index))


def _drop_params(module: nn.Module, record: List[ParamSlice]) -> None:
    for p in module.parameters():
        record.append(ParamSlice(p, None, 0, p.new_zeros(0, dtype=torch.long)))


def _slice_bn(bn: nn.Module, index: torch.Tensor,
              record: List[ParamSlice]) -> None:
    if bn.affine:
        _slice_param(bn, 'weight', 0, index, record)
        _slice_param(bn, 'bias', 0, index, record)
    if bn.track_running_stats:
        bn.running_mean = bn.running_mean.index_select(0, index).clone()
        bn.running_var = bn.running_var.index_select(0, index).clone()
    bn.num_features = len(index)


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
        self.norm_cfg = norm_cfg
        self.is_identity = spec.is_identity
        if self.is_identity:
            return
        e = spec.num_atoms
        self.expand_conv = nn.Conv2d(self.in_channels, e, 1, bias=False)
        self.expand_bn = build_norm_layer(norm_cfg, e)[1]
        # Keys 'k3', 'k5', ...: a kernel that dies leaves without renaming
        # the others (checkpoint keys stay readable and stable).
        self.dw = nn.ModuleDict({
            f'k{k}': DepthwiseBranch(n, k, self.stride, norm_cfg)
            for k, n in spec.kernels.items()
        })
        self.act = make_act(act)
        self.se = SqueezeExcite(e, se_channels, make_act(act)) \
            if se_channels else None
        self.project_conv = nn.Conv2d(e, self.out_channels, 1, bias=False)
        self.project_bn = build_norm_layer(norm_cfg, self.out_channels)[1]

    # ----------------------------------------------------------- queries
    @property
    def kernels(self) -> Dict[int, int]:
        """Kernel size -> live atoms, ascending kernel order."""
        if self.is_identity:
            return {}
        return {b.kernel_size: b.channels for b in self.dw.values()}

    def spec(self) -> BlockSpec:
        return BlockSpec(self.in_channels, self.out_channels, self.stride,
                         self.kernels)

    def importance_bns(self) -> Dict[int, nn.Module]:
        """Kernel size -> the BN whose gamma is that kernel's atoms'
        importance."""
        if self.is_identity:
            return {}
        return {b.kernel_size: b.bn for b in self.dw.values()}

    # ----------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, Cin, H, W) -> (N, Cout, H / stride, W / stride)."""
        if self.is_identity:
            return x
        y = self.act(self.expand_bn(self.expand_conv(x)))
        branches = list(self.dw.values())
        if len(branches) == 1:
            b = branches[0]
            y = self.act(b.bn(b.conv(y)))
        else:
            parts = torch.split(y, [b.channels for b in branches], dim=1)
            y = torch.cat([
                self.act(b.bn(b.conv(p))) for b, p in zip(branches, parts)
            ], dim=1)
        if self.se is not None:
            y = self.se(y)
        y = self.project_bn(self.project_conv(y))
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
            keep: Kernel size -> indices (within that kernel's slice) of the
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
            raise ValueError(f'keep_atoms: block has no kernel {sorted(unknown)}')
        record: List[ParamSlice] = []
        dev = self.expand_conv.weight.device
        kept_global, removed_global, new_kernels = [], [], {}
        offset = 0
        for k, n in self.kernels.items():
            idx = keep.get(k)
            idx = (torch.as_tensor(idx, dtype=torch.long, device=dev).unique()
                   if idx is not None else torch.zeros(0, dtype=torch.long,
                                                       device=dev))
            if len(idx) and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f'keep_atoms: index out of range for kernel '
                                 f'{k} with {n} atoms')
            mask = torch.ones(n, dtype=torch.bool, device=dev)
            mask[idx] = False
            kept_global.append(idx + offset)
            removed_global.append(mask.nonzero().flatten() + offset)
            if len(idx):
                new_kernels[k] = idx
            offset += n
        kept = torch.cat(kept_global)
        removed = torch.cat(removed_global)
        if not len(removed):
            return record
        if not len(kept) and not self.has_residual:
            raise ValueError('keep_atoms: a block without residual must keep '
                             'at least one atom')

        if self.se is None and isinstance(self.project_bn, _BatchNorm) \
                and self.project_bn.track_running_stats:
            betas = torch.cat([b.bn.bias for b in self.dw.values()]) \
                if all(b.bn.affine for b in self.dw.values()) else None
            if betas is not None:
                const = self.act(betas[removed].clone())
                w = self.project_conv.weight[:, removed, 0, 0]
                self.project_bn.running_mean -= w @ const

        if not len(kept):  # every atom died: the block becomes the identity
            for name in ('expand_conv', 'expand_bn', 'dw', 'se',
                         'project_conv', 'project_bn'):
                mod = getattr(self, name)
                if mod is not None:
                    _drop_params(mod, record)
                delattr(self, name)
            self.is_identity = True
            return record

        _slice_param(self.expand_conv, 'weight', 0, kept, record)
        self.expand_conv.out_channels = len(kept)
        _slice_bn(self.expand_bn, kept, record)
        for k in list(self.kernels):
            branch = self.dw[f'k{k}']
            if k not in new_kernels:
                _drop_params(branch, record)
                del self.dw[f'k{k}']
                continue
            idx = new_kernels[k]
            if len(idx) == branch.channels:
                continue
            _slice_param(branch.conv, 'weight', 0, idx, record)
            branch.conv.in_channels = branch.conv.out_channels = len(idx)
            branch.conv.groups = len(idx)
            _slice_bn(branch.bn, idx, record)
        if self.se is not None:
            _slice_param(self.se.reduce, 'weight', 1, kept, record)
            self.se.reduce.in_channels = len(kept)
            _slice_param(self.se.expand, 'weight', 0, kept, record)
            _slice_param(self.se.expand, 'bias', 0, kept, record)
            self.se.expand.out_channels = len(kept)
        _slice_param(self.project_conv, 'weight', 1, kept, record)
        self.project_conv.in_channels = len(kept)
        return record
