"""The MACs / params model: arithmetic on an :class:`ArchSpec`, no torch.

Counting convention of the paper (its "FLOPs" are multiply-accumulates),
batch 1:

* conv: ``Cin * Cout * kh * kw * Hout * Wout / groups``, bias not counted;
* linear: ``in * out``; global average pool: ``C * H * W``;
* SE: the channel-wise multiply ``C * H * W`` plus its two 1x1 convs;
* BN, activations and dropout: free.

Params are conv and linear weights and biases (BN excluded, as in the
paper's tables); ``params_with_bn`` adds the BN affine parameters.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple, Union

from .spec import ArchSpec, BlockSpec, SpecLike, load_spec

Size = Union[int, Sequence[int]]


def _size(input_size: Size) -> Tuple[int, int]:
    if isinstance(input_size, int):
        return input_size, input_size
    h, w = input_size
    return int(h), int(w)


def _down(hw: Tuple[int, int], stride: int) -> Tuple[int, int]:
    # A conv with padding k // 2 (odd k) gives ceil(H / stride).
    return -(-hw[0] // stride), -(-hw[1] // stride)


def _se_cost(channels: int, squeeze: int, area: int) -> Tuple[int, int]:
    """(MACs, params) of SE on ``channels``: multiply + two 1x1 convs."""
    if not squeeze:
        return 0, 0
    return channels * area + 2 * channels * squeeze, \
        2 * channels * squeeze + channels + squeeze


@dataclass
class BlockCost:
    """Cost of one searchable block.

    Attributes:
        macs: MACs of the whole block.
        params: Conv params of the block (BN excluded).
        in_hw: Input resolution (H, W).
        out_hw: Output resolution (H, W).
        atom_macs: Kernel size -> MACs of one atom of that kernel
            (:func:`atom_cost`).
        atom_params: Kernel size -> params of one atom of that kernel.
    """
    macs: int
    params: int
    in_hw: Tuple[int, int]
    out_hw: Tuple[int, int]
    atom_macs: Dict[int, int]
    atom_params: Dict[int, int] = field(default_factory=dict)


@dataclass
class CostReport:
    """What :func:`count` returns."""
    macs: int
    params: int
    params_with_bn: int
    blocks: List[BlockCost] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(macs=self.macs, params=self.params,
                    params_with_bn=self.params_with_bn)


def atom_cost(block: BlockSpec, kernel: int, in_hw: Tuple[int, int],
              out_hw: Tuple[int, int], se_channels: int = 0
              ) -> Tuple[int, int]:
    """(MACs, params) of one atom, one expanded channel of ``kernel``: the
    one formula every count and cost model uses.

    MACs: its channel's share of the expand conv at the input resolution,
    of its depthwise conv and of the project conv at the output resolution,
    and with SE its share of SE (the channel-wise multiply and one weight
    of each 1x1 conv per squeeze channel). Params: the same convs' weights,
    and with SE one bias of the expand conv. (SE's reduce bias, one per
    squeeze channel, belongs to the block, not to an atom.)
    """
    aout = out_hw[0] * out_hw[1]
    macs = block.in_channels * in_hw[0] * in_hw[1] + kernel * kernel * aout \
        + block.out_channels * aout
    params = block.in_channels + kernel * kernel + block.out_channels
    if se_channels:
        macs += aout + 2 * se_channels
        params += 2 * se_channels + 1
    return macs, params


def count(spec: SpecLike, input_size: Size = 224,
          num_classes: int = 1000) -> CostReport:
    """Count MACs and params of a spec.

    Args:
        spec: The spec, or anything :func:`load_spec` accepts.
        input_size: Input (H, W) or one side; batch 1.
        num_classes: Width of the final linear classifier; 0 to count the
            backbone only (then the global pool is not counted either).

    Returns:
        CostReport: totals and per-block costs, including each atom's MACs.
    """
    spec = load_spec(spec)
    hw = _size(input_size)
    macs = params = bn = 0

    # Stem: 3x3 stride-2 conv.
    hw = _down(hw, 2)
    area = hw[0] * hw[1]
    macs += 3 * spec.stem_channels * 9 * area
    params += 3 * spec.stem_channels * 9
    bn += 2 * spec.stem_channels

    # Fixed first block: depthwise k x k [+ SE] + 1x1 project (expansion 1).
    k = spec.first_kernel
    macs += spec.stem_channels * k * k * area
    macs += spec.stem_channels * spec.first_channels * area
    params += spec.stem_channels * k * k + spec.stem_channels * spec.first_channels
    m, p = _se_cost(spec.stem_channels,
                    spec.se_channels(spec.stem_channels), area)
    macs, params = macs + m, params + p
    bn += 2 * (spec.stem_channels + spec.first_channels)

    blocks = []
    for b in spec.blocks:
        in_hw, out_hw = hw, _down(hw, b.stride)
        sq = spec.se_channels(b.in_channels)
        per_atom = {kk: atom_cost(b, kk, in_hw, out_hw, sq)
                    for kk in b.kernels}
        m = sum(n * per_atom[kk][0] for kk, n in b.kernels.items())
        p = sum(n * per_atom[kk][1] for kk, n in b.kernels.items())
        if b.num_atoms:
            p += sq  # SE's reduce bias
            bn += 2 * (2 * b.num_atoms + b.out_channels)
        macs += m
        params += p
        blocks.append(BlockCost(m, p, in_hw, out_hw,
                                {kk: c[0] for kk, c in per_atom.items()},
                                {kk: c[1] for kk, c in per_atom.items()}))
        hw = out_hw

    # Head: 1x1 conv, global pool, linear classifier.
    cin = spec.blocks[-1].out_channels if spec.blocks else spec.first_channels
    area = hw[0] * hw[1]
    macs += cin * spec.head_channels * area
    params += cin * spec.head_channels
    bn += 2 * spec.head_channels
    if num_classes:
        macs += spec.head_channels * area
        macs += spec.head_channels * num_classes
        params += spec.head_channels * num_classes + num_classes
    return CostReport(macs, params, params + bn, blocks)

