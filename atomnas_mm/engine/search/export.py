"""The deployable checkpoint: weights (EMA when there are), BN statistics
recomputed, and the spec in its meta. One writer for the search's end and
``tools/export_arch.py``."""
from __future__ import annotations

import copy
import os
from typing import Iterable, Mapping, Optional

import torch
from torch import nn

from ...models.arch import ArchSpec
from ...models.checkpoint import SPEC_META_KEY
from ..recalibrate import recalibrate_bn


def recalibrated_copy(model: nn.Module, dataloader: Optional[Iterable],
                      num_batches: int, progress: bool = True) -> nn.Module:
    """A copy of ``model`` (an mmengine ``BaseModel``) whose BN statistics
    are recomputed over ``num_batches`` of ``dataloader`` (none: a plain
    copy)."""
    copied = copy.deepcopy(model)
    if num_batches > 0 and dataloader is not None:
        recalibrate_bn(copied, dataloader, num_batches, progress)
    return copied


def save_deploy_checkpoint(state_dict: Mapping[str, torch.Tensor],
                           spec: ArchSpec, path: str,
                           meta: Optional[dict] = None) -> str:
    """Write ``{'state_dict', 'meta': {'atomnas_spec', ...}}`` atomically
    (a temporary file, then a rename: never a half-written file)."""
    meta = dict(meta or {})
    meta[SPEC_META_KEY] = spec.to_dict()
    state = {k: v.detach().cpu() for k, v in state_dict.items()}
    tmp = f'{path}.tmp'
    torch.save(dict(state_dict=state, meta=meta), tmp)
    os.replace(tmp, path)
    return path
