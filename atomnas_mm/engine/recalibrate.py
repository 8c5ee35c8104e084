"""BN recalibration: recompute running statistics for the current weights."""
import sys
from typing import Iterable, List

import torch
from mmengine.dist import all_reduce, get_world_size, is_main_process
from mmengine.utils import ProgressBar
from torch import nn
from ..utils.seams import BatchNormBase


def batch_norms(model: nn.Module) -> List[BatchNormBase]:
    return [m for m in model.modules()
            if isinstance(m, BatchNormBase) and m.track_running_stats]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, dataloader: Iterable, num_batches: int,
                   progress: bool = True) -> int:
    """Reset every BN's running statistics and recompute them as a
    cumulative average over ``num_batches`` batches of ``dataloader``
    (mmengine data batches, put through the model's data preprocessor in
    training mode, as the training pipeline sees them). Under DDP the
    statistics are averaged across ranks, so every rank ends with the same.

    Args:
        model: An mmengine ``BaseModel`` (not the DDP wrapper).
        dataloader: Usually the runner's training dataloader.
        num_batches: How many batches to use.
        progress: Show a progress bar on the main process.

    Returns:
        int: the number of batches actually used.
    """
    bns = batch_norms(model)
    if not bns or num_batches <= 0:
        return 0
    was_training = model.training
    momenta = [bn.momentum for bn in bns]
    model.eval()  # dropout and the like off; only BN collects statistics
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
        bn.train()
    # The stream is looked up now: ProgressBar's default was bound at import
    # and would escape a caller's redirection.
    bar = ProgressBar(num_batches, file=sys.stdout) \
        if progress and is_main_process() else None
    used = 0
    try:
        for data in dataloader:
            if used >= num_batches:
                break
            data = model.data_preprocessor(data, True)
            model(**data, mode='tensor')
            used += 1
            if bar is not None:
                bar.update()
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        model.train(was_training)
    if bar is not None:
        print()  # ProgressBar leaves the cursor on its line
    if get_world_size() > 1:
        for bn in bns:
            all_reduce(bn.running_mean, op='mean')
            all_reduce(bn.running_var, op='mean')
    return used


def snapshot_bn(model: nn.Module) -> list:
    """Copies of every BN's running statistics (to restore them later)."""
    return [(bn.running_mean.clone(), bn.running_var.clone(),
             bn.num_batches_tracked.clone()) for bn in batch_norms(model)]


@torch.no_grad()
def restore_bn(model: nn.Module, snapshot: list) -> None:
    for bn, (mean, var, n) in zip(batch_norms(model), snapshot):
        if bn.running_mean.shape == mean.shape:
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.num_batches_tracked.copy_(n)
