"""Activation checkpointing that leaves BN statistics as they would be
without it."""
from __future__ import annotations

import contextlib
import functools
from typing import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from ...utils.seams import BatchNormBase


def checkpointed(module: nn.Module, fn: Callable, *args) -> torch.Tensor:
    """``fn(*args)`` (the computation of ``module``) with its activations
    recomputed in the backward instead of kept.

    The recomputation runs ``module``'s BNs again in train mode, which would
    update their running statistics a second time; there they update
    throw-away copies instead. Normalisation uses the batch's statistics
    either way, so the recomputed activations are the forward's.
    """
    return checkpoint(fn, *args, use_reentrant=False,
                      context_fn=functools.partial(_contexts, module))


def _contexts(module: nn.Module):
    """``context_fn`` of ``torch.utils.checkpoint``: (forward, recompute)."""
    return contextlib.nullcontext(), _frozen_bn_statistics(module)


@contextlib.contextmanager
def _frozen_bn_statistics(module: nn.Module):
    saved = []
    for m in module.modules():
        if isinstance(m, BatchNormBase) and m.track_running_stats:
            saved.append((m, m.running_mean, m.running_var,
                          m.num_batches_tracked))
            m.running_mean = m.running_mean.clone()
            m.running_var = m.running_var.clone()
            m.num_batches_tracked = m.num_batches_tracked.clone()
    try:
        yield
    finally:
        for m, mean, var, count in saved:
            m.running_mean, m.running_var = mean, var
            m.num_batches_tracked = count
