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
is the only way the block changes shape; :meth:`AtomicBlock.to_identity`
replaces a residual block whose atoms all died.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Sequence, Tuple

import torch
from mmcv.cnn import build_norm_layer
from torch import nn

from ..arch.spec import ACTIVATIONS, BlockSpec
from .checkpoint import checkpointed
from .identity_block import IdentityBlock
from .se import SqueezeExcite
from .surgery import ParamSlice, drop_params, slice_bn, slice_param
from ...utils.seams import BatchNormBase


def make_act(name: str) -> nn.Module:
    """An activation module by its spec name (``ACTIVATIONS``): ``'relu'``
    -> ReLU, ``'swish'`` -> SiLU (Swish with beta 1)."""
    if name not in ACTIVATIONS:
        raise ValueError(f'unknown activation {name!r} (expected one of '
                         f'{", ".join(ACTIVATIONS)})')
    return getattr(nn, ACTIVATIONS[name])(inplace=True)


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
    """A searchable block built from a :class:`BlockSpec` with at least one
    atom (a block without atoms is an :class:`IdentityBlock`).

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
        if spec.is_identity:
            raise ValueError('AtomicBlock: the spec has no atoms; build an '
                             'IdentityBlock instead')
        self.in_channels = spec.in_channels
        self.out_channels = spec.out_channels
        self.stride = spec.stride
        self.has_residual = spec.has_residual
        self.act_name = act
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
        # Recompute the atoms' activations in the backward (set by
        # AtomNASNet(with_cp=True)): they hold most of a block's memory.
        self.with_cp = False

    # ----------------------------------------------------------- queries
    @property
    def kernels(self) -> Dict[int, int]:
        """Kernel size -> live atoms, ascending kernel order."""
        return {b.kernel_size: b.channels for b in self.branches.values()}

    def spec(self) -> BlockSpec:
        return BlockSpec(self.in_channels, self.out_channels, self.stride,
                         self.kernels)

    def importance_bns(self) -> Dict[int, nn.Module]:
        """Kernel size -> the BN whose gamma is that kernel's atoms'
        importance."""
        return {b.kernel_size: b.dw_bn for b in self.branches.values()}

    # ----------------------------------------------------------- forward
    def _project(self, hidden: List[torch.Tensor]) -> torch.Tensor:
        """The atoms' activations, one tensor per kernel -> project BN out."""
        branches = list(self.branches.values())
        if self.se is not None:
            hidden = self.se(hidden)
        y = branches[0].project_conv(hidden[0])
        for b, h in zip(branches[1:], hidden[1:]):
            y = y + b.project_conv(h)
        return self.project_bn(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, Cin, H, W) -> (N, Cout, H / stride, W / stride)."""
        if self.with_cp and self.training and torch.is_grad_enabled():
            hidden = [checkpointed(b, b.expand, x, self.act)
                      for b in self.branches.values()]
        else:
            hidden = [b.expand(x, self.act) for b in self.branches.values()]
        y = self._project(hidden)
        return y + x if self.has_residual else y

    # ----------------------------------------------------------- surgery
    def split_keep(self, keep: Mapping[int, Sequence[int]]
                   ) -> Dict[int, Tuple[torch.Tensor, torch.Tensor]]:
        """Check keep-indices and split every kernel's atoms into kept and
        removed, without changing anything.

        Args:
            keep: Kernel size -> indices (within that kernel's atoms) of the
                atoms to keep; a kernel missing from ``keep`` keeps nothing.

        Returns:
            dict: kernel size -> (kept, removed) sorted index tensors.

        Raises:
            ValueError: an unknown kernel or an index out of range.
        """
        unknown = set(keep) - set(self.kernels)
        if unknown:
            raise ValueError(
                f'keep_atoms: block has no kernel {sorted(unknown)}')
        dev = self.project_bn.weight.device \
            if getattr(self.project_bn, 'weight', None) is not None else 'cpu'
        plan = {}
        for k, n in self.kernels.items():
            idx = keep.get(k)
            idx = torch.as_tensor(
                list(idx) if idx is not None and not torch.is_tensor(idx)
                else (idx if idx is not None else []),
                dtype=torch.long, device=dev).unique()
            if len(idx) and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f'keep_atoms: index out of range for kernel '
                                 f'{k} with {n} atoms')
            mask = torch.ones(n, dtype=torch.bool, device=dev)
            mask[idx] = False
            plan[k] = (idx, mask.nonzero().flatten())
        return plan

    @torch.no_grad()
    def keep_atoms(self, keep: Mapping[int, Sequence[int]]
                   ) -> List[ParamSlice]:
        """Keep only the given atoms (at least one); remove the rest
        physically.

        The removed atoms' constant output (their activated depthwise-BN
        beta, exact when their gamma is 0) is pushed through the project
        conv and folded into the project BN's running mean, so the block's
        eval-mode output does not change. In train mode BN subtracts the
        batch mean, which already cancels a constant. (With SE the removed
        channels are gated by an input-dependent factor, so the fold is
        skipped and the removal is not exact.)

        A block keeps at least one atom: removing all of them is
        :meth:`to_identity`, which replaces the block.

        Args:
            keep: Kernel size -> indices (within that kernel's atoms) of the
                atoms to keep. A kernel missing from ``keep`` or with no
                indices leaves the block.

        Returns:
            list[ParamSlice]: every parameter replaced or dropped, so that
            owners of per-parameter state (optimizers) can follow.
        """
        plan = self.split_keep(keep)
        if not any(len(r) for _, r in plan.values()):
            return []
        if not any(len(i) for i, _ in plan.values()):
            raise ValueError('keep_atoms: a block keeps at least one atom '
                             '(a residual block without atoms is replaced by '
                             'to_identity())')

        bn = self.project_bn
        if self.se is None and isinstance(bn, BatchNormBase) and \
                bn.track_running_stats:
            for k, (_, removed) in plan.items():
                branch = self.branches[f'k{k}']
                if len(removed) and branch.dw_bn.affine:
                    const = self.act(branch.dw_bn.bias[removed].clone())
                    w = branch.project_conv.weight[:, removed, 0, 0]
                    bn.running_mean -= w @ const

        record: List[ParamSlice] = []
        if self.se is not None:
            kept_global, start = [], 0
            for k, (kept, _) in plan.items():
                kept_global.append(kept + start)
                start += self.kernels[k]
            self.se.keep_channels(torch.cat(kept_global), record)
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

    @torch.no_grad()
    def constant_output(self) -> torch.Tensor:
        """What the block adds to its input when every atom's gamma is 0,
        in eval mode: each atom outputs ``act(beta)`` of its depthwise BN,
        and SE, project convs and project BN (running statistics) turn that
        into a per-channel constant.

        Returns:
            Tensor: shape (Cout,), float32.
        """
        hidden = []
        for b in self.branches.values():
            bn = b.dw_bn
            beta = bn.bias if bn.affine else bn.running_mean.new_zeros(
                b.channels)
            dtype = b.project_conv.weight.dtype
            hidden.append(self.act(beta.detach().clone()).to(dtype).view(
                1, -1, 1, 1))
        modules = [self.project_bn] + ([self.se] if self.se else [])
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        try:
            out = self._project(hidden)
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)
        return out.flatten().float()

    def to_identity(self) -> IdentityBlock:
        """The block with every atom removed: the identity plus
        :meth:`constant_output` (exact in eval mode when the atoms' gammas
        are 0; see :class:`IdentityBlock` for train mode).

        Raises:
            ValueError: the block has no residual, so it cannot become the
                identity.
        """
        if not self.has_residual:
            raise ValueError('to_identity: a block without residual '
                             f'({self.in_channels}->{self.out_channels}, '
                             f'stride {self.stride}) must keep at least one '
                             'atom')
        bias = self.constant_output()
        return IdentityBlock(self.out_channels, bias.to(
            self.project_bn.weight.device
            if getattr(self.project_bn, 'weight', None) is not None
            else 'cpu'))
