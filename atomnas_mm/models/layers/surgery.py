"""Parameter surgery shared by the layers: replace a parameter by a slice
of itself and record it, so that optimizers and other owners can follow."""
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn


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


def slice_param(module: nn.Module, name: str, dim: int, index: torch.Tensor,
                record: List[ParamSlice]) -> None:
    """Replace ``module.<name>`` by its slice at ``index`` along ``dim``
    (a new Parameter, same memory format) and record the change."""
    old = getattr(module, name)
    data = old.detach().index_select(dim, index)
    if old.dim() == 4 and old.is_contiguous(memory_format=torch.channels_last):
        data = data.contiguous(memory_format=torch.channels_last)
    new = nn.Parameter(data.clone(memory_format=torch.preserve_format),
                       requires_grad=old.requires_grad)
    setattr(module, name, new)
    record.append(ParamSlice(old, new, dim, index))


def drop_params(module: nn.Module, record: List[ParamSlice]) -> None:
    """Record that every parameter of ``module`` leaves the model."""
    for p in module.parameters():
        record.append(ParamSlice(p, None, 0, p.new_zeros(0, dtype=torch.long)))


def slice_bn(bn: nn.Module, index: torch.Tensor,
             record: List[ParamSlice]) -> None:
    """Slice a BN's affine parameters and running statistics."""
    if bn.affine:
        slice_param(bn, 'weight', 0, index, record)
        slice_param(bn, 'bias', 0, index, record)
    if bn.track_running_stats:
        bn.running_mean = bn.running_mean.index_select(0, index).clone()
        bn.running_var = bn.running_var.index_select(0, index).clone()
    bn.num_features = len(index)
