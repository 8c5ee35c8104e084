"""What the engine needs around a shape change of the net: finding the
backbone and the EMA copy, and making optimizers follow replaced
parameters."""
from typing import Dict, Iterable, List, Optional

import torch
from mmengine.model import is_model_wrapper
from torch import nn

from ..models.backbones import AtomNASNet
from ..models.layers import ParamSlice


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


def find_backbone(model: nn.Module, what: str = 'model') -> AtomNASNet:
    """The single :class:`AtomNASNet` inside ``model``.

    Raises:
        ValueError: there is none (nothing to search) or several.
    """
    nets = [m for m in unwrap(model).modules() if isinstance(m, AtomNASNet)]
    if not nets:
        raise ValueError(f'{what} has no AtomNASNet backbone: the AtomNAS '
                         'search needs one (backbone=dict(type='
                         '"atomnas_mm.AtomNASNet", ...))')
    if len(nets) > 1:
        raise ValueError(f'{what} has {len(nets)} AtomNASNet modules; the '
                         'search handles exactly one')
    if not len(nets[0].blocks):
        raise ValueError(f'{what}: the AtomNASNet has no searchable blocks')
    return nets[0]


def optimizer_stepped(runner) -> bool:
    """Whether this iteration's ``update_params`` stepped the optimizer:
    every iteration, or every ``accumulative_counts``-th under gradient
    accumulation. Call it after the step (``after_train_iter``):
    ``OptimWrapper.should_update`` answers for the iteration just counted."""
    from mmengine.optim import OptimWrapper
    wrapper = runner.optim_wrapper
    return not isinstance(wrapper, OptimWrapper) or wrapper.should_update()


def find_hook(runner, cls):
    """The runner's hook of type ``cls``, or None."""
    for hook in runner.hooks:
        if isinstance(hook, cls):
            return hook
    return None


def find_ema_hook(runner):
    """mmengine's EMAHook of the runner, or None."""
    from mmengine.hooks import EMAHook
    return find_hook(runner, EMAHook)


@torch.no_grad()
def follow_in_optimizer(optimizer: torch.optim.Optimizer,
                        records: Iterable[ParamSlice]) -> None:
    """Point ``optimizer`` at the new parameters and slice their state.

    Every state tensor shaped like the old parameter (momentum buffers,
    square averages, Adam moments...) is sliced like it; other state
    (``step`` counters, scalars) is kept as is. Works for any torch
    optimizer, since state is keyed by parameter.
    """
    by_id: Dict[int, ParamSlice] = {id(r.old): r for r in records}
    if not by_id:
        return
    for group in optimizer.param_groups:
        params: List[nn.Parameter] = []
        for p in group['params']:
            r = by_id.get(id(p))
            if r is None:
                params.append(p)
                continue
            state = optimizer.state.pop(p, None)
            if r.new is None:
                continue
            params.append(r.new)
            if state:
                optimizer.state[r.new] = {
                    k: (_slice_like(v, r) if torch.is_tensor(v)
                        and v.shape == p.shape and v.dim() > 0 else v)
                    for k, v in state.items()
                }
        group['params'] = params


def _slice_like(state: torch.Tensor, r: ParamSlice) -> torch.Tensor:
    """Slice a per-parameter state tensor like its parameter, in the
    parameter's memory format (so fused optimizer kernels see one layout)."""
    out = state.index_select(r.dim, r.index.to(state.device))
    if out.dim() == 4 and r.new.is_contiguous(
            memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def ema_backbone(ema_hook) -> Optional[AtomNASNet]:
    if ema_hook is None or not hasattr(ema_hook, 'ema_model'):
        return None
    return find_backbone(ema_hook.ema_model.module, 'EMA model')
