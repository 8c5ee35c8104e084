"""A change of the net's shape, as one transaction over everything that
holds per-atom state.

The same function serves a live shrink and the loading of a checkpoint of a
shrunk net: the backbone, mmengine's EMA copy (and its averaged-parameter
table), the optimizer's state and the DDP wrapper all follow one plan, and
whoever keeps per-atom state of its own (the search state) is told.
"""
from __future__ import annotations

from typing import Iterable, List, Mapping, Sequence

from mmengine.optim import OptimWrapper

from ...models.layers import ParamSlice
from ...utils.seams import refresh_averaged_model, rewrap
from ..utils import ema_backbone, find_ema_hook, follow_in_optimizer

Plan = Mapping[int, Mapping[int, Sequence[int]]]


def reshape_search(runner, backbone, plan: Plan,
                   listeners: Iterable = ()) -> List[ParamSlice]:
    """Apply keep-indices to the backbone and to everything that follows it.

    Order: backbone (it checks every block's indices before changing any),
    EMA copy, EMA table, optimizer state (any torch optimizer: every state
    tensor shaped like a parameter is sliced like it), each listener's
    ``after_reshape(plan)``, and finally the DDP wrapper is rebuilt around
    the new parameters. The EMA copy is checked to have the backbone's
    spec first, so a failure happens before anything changed.

    Args:
        runner: The mmengine Runner.
        backbone: The runner model's AtomNASNet.
        plan: Block -> kernel -> indices to keep (:meth:`AtomNASNet.keep_atoms`).
        listeners: Objects told of the change (the search state).

    Returns:
        The parameter records of the backbone's change.
    """
    ema_hook = find_ema_hook(runner)
    ema_net = ema_backbone(ema_hook)
    if ema_net is not None and ema_net.arch_spec != backbone.arch_spec:
        raise RuntimeError('AtomNAS: the EMA copy and the model have '
                           'different nets; refusing to change either')
    records = backbone.keep_atoms(plan)
    if ema_net is not None:
        ema_net.keep_atoms(plan)
        refresh_averaged_model(ema_hook.ema_model)
    if isinstance(runner.optim_wrapper, OptimWrapper):
        follow_in_optimizer(runner.optim_wrapper.optimizer, records)
    for listener in listeners:
        listener.after_reshape(plan)
    rewrap(runner)
    return records


def reshape_to_checkpoint(runner, backbone, spec, source: str = 'checkpoint',
                          listeners: Iterable = ()) -> bool:
    """Before a checkpoint's weights are copied: shrink model, EMA copy and
    optimizer to the checkpoint's spec. Returns whether anything changed."""
    plan = backbone.plan_to(spec, source)
    if plan:
        reshape_search(runner, backbone, plan, listeners)
    return bool(plan)
