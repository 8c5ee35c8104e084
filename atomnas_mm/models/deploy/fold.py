"""Pure tensor functions for the fused inference form: BN folded into conv
weights and biases, and zero-padding of atoms.

All arithmetic is in float64; callers cast the result to the dtype of the
weights they replace.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn
from ...utils.seams import BatchNormBase


class FuseError(ValueError):
    """A module that cannot be folded (one line naming it and why)."""


def bn_scale_shift(bn: nn.Module, where: str = 'BN'
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as ``y = scale * x + shift`` per channel, in float64.

    Raises:
        FuseError: not a BatchNorm, or one without running statistics (its
            eval output depends on the batch, so it has no fixed affine
            form).
    """
    if not isinstance(bn, BatchNormBase):
        raise FuseError(f'{where}: is {type(bn).__name__}; only BatchNorm '
                        'layers with running statistics can be folded')
    if not bn.track_running_stats or bn.running_mean is None:
        raise FuseError(f'{where}: has no running statistics '
                        '(track_running_stats=False), so its eval output '
                        'depends on the batch and cannot be folded')
    var = bn.running_var.detach().double()
    mean = bn.running_mean.detach().double()
    scale = torch.rsqrt(var + bn.eps)
    shift = -mean * scale
    if bn.affine:
        gamma = bn.weight.detach().double()
        scale = scale * gamma
        shift = shift * gamma + bn.bias.detach().double()
    return scale, shift


def fold_conv_bn(weight: torch.Tensor, bn: nn.Module,
                 bias: Optional[torch.Tensor] = None, where: str = 'BN'
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``bn(conv(x))`` as one conv: (weight, bias) in float64.

    Args:
        weight: The conv's weight, (Cout, Cin / groups, kh, kw).
        bn: The eval-mode BN on the conv's Cout channels.
        bias: The conv's bias, if it has one.
    """
    scale, shift = bn_scale_shift(bn, where)
    w = weight.detach().double() * scale.view(-1, 1, 1, 1)
    b = shift if bias is None else bias.detach().double() * scale + shift
    return w, b


def padded_size(n: int, divisor: int) -> int:
    """``n`` rounded up to a multiple of ``divisor`` (``divisor`` 1: n)."""
    return -(-n // divisor) * divisor


def pad_to(t: torch.Tensor, size: int, dim: int = 0) -> torch.Tensor:
    """``t`` followed by zeros up to ``size`` entries along ``dim``."""
    extra = size - t.shape[dim]
    if extra < 0:
        raise ValueError(f'pad_to: {t.shape[dim]} entries do not fit in {size}')
    if not extra:
        return t
    shape = list(t.shape)
    shape[dim] = extra
    return torch.cat([t, t.new_zeros(shape)], dim)


def pad_kernel(weight: torch.Tensor, size: int) -> torch.Tensor:
    """A (C, 1, k, k) depthwise weight centred in (C, 1, size, size) zeros.

    With padding ``size // 2`` instead of ``k // 2`` the conv computes the
    same outputs at every stride (both kernels are centred on the same
    input pixel), so kernels of different sizes can share one conv.
    """
    k = weight.shape[-1]
    if k == size:
        return weight
    if k > size or (size - k) % 2:
        raise ValueError(f'pad_kernel: cannot centre a {k}x{k} kernel in '
                         f'{size}x{size}')
    o = (size - k) // 2
    out = weight.new_zeros(weight.shape[:2] + (size, size))
    out[..., o:o + k, o:o + k] = weight
    return out


def group_sizes(sizes: Sequence[int], divisor: int,
                per_kernel: bool) -> List[int]:
    """Each kernel's group of atoms in the padded layout, padding included.

    Args:
        sizes: Real atoms per kernel, in order.
        divisor: Pad to a multiple of this (1: no padding).
        per_kernel: Pad each kernel's group (needed where kernels keep
            separate convs), or only the total (one conv over all atoms: the
            last group takes the padding).

    Returns:
        Padded size of each group; each group holds its kernel's real atoms
        first, then zero atoms.
    """
    if per_kernel:
        return [padded_size(n, divisor) for n in sizes]
    total = sum(sizes)
    return list(sizes[:-1]) + [sizes[-1] + padded_size(total, divisor) - total]
