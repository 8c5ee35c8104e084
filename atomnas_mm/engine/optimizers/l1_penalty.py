"""The FLOPs-aware L1 penalty on the atoms' importance factors.

``loss + lambda(t) * sum_i c_i |alpha_i|`` where ``alpha_i`` is the gamma of
the BN after atom i's depthwise conv and ``c_i`` its MACs normalised so that
the average atom of the initial supernet costs 1. All atoms of one kernel in
one block cost the same, so the penalty is a sum over (block, kernel) of
``c * |gamma|.sum()``: nothing per atom needs slicing when atoms go.
"""
from typing import Dict, Optional, Tuple

import torch
from mmengine.logging import MessageHub
from mmengine.optim import (AmpOptimWrapper, DefaultOptimWrapperConstructor,
                            OptimWrapper)
from torch import nn

from ...models.arch import count
from ...registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS
from ...utils.seams import accumulation_of
from ..utils import find_backbone


class L1PenaltyMixin:
    """Adds the penalty to the loss in ``update_params``, before the loss is
    scaled for gradient accumulation or AMP, so both stay correct; under DDP
    the penalty's gradient is identical on every rank.

    Args (``penalty`` dict of the wrapper config):
        weight: The final lambda (1.8e-4 / 1.2e-4 / 1.0e-4 for A / B / C).
        ramp_epochs: Epochs over which lambda rises linearly from 0, per
            iteration. ``ramp_iters`` may be given instead.
        equal_penalty: Give every atom cost 1 (the paper's Table 2 baseline).
        input_size: Input (H, W) or side at which atoms are costed.
    """

    def _init_penalty(self, penalty: Optional[dict]) -> None:
        cfg = dict(weight=0.0, ramp_epochs=0, ramp_iters=None,
                   equal_penalty=False, input_size=224)
        unknown = set(penalty or {}) - set(cfg)
        if unknown:
            raise ValueError(f'penalty: unknown option {sorted(unknown)[0]!r} '
                             f'(options: {", ".join(cfg)})')
        cfg.update(penalty or {})
        if cfg['weight'] < 0:
            raise ValueError(f'penalty.weight (lambda) must be >= 0, got '
                             f'{cfg["weight"]}')
        if cfg['ramp_epochs'] < 0 or (cfg['ramp_iters'] or 0) < 0:
            raise ValueError('penalty: ramp_epochs / ramp_iters must be >= 0')
        self.penalty_cfg = cfg
        self._backbone = None
        self._costs: Dict[Tuple[int, int], float] = {}

    def attach(self, model: nn.Module) -> None:
        """Find the backbone and cost its atoms (once: the initial net)."""
        self._backbone = find_backbone(model)
        spec = self._backbone.arch_spec
        report = count(spec, self.penalty_cfg['input_size'])
        total = sum(n * c.atom_macs[k] for b, c in zip(spec.blocks,
                                                        report.blocks)
                    for k, n in b.kernels.items())
        mean = total / max(spec.num_atoms, 1)
        self._costs = {
            (i, k): 1.0 if self.penalty_cfg['equal_penalty'] else macs / mean
            for i, c in enumerate(report.blocks)
            for k, macs in c.atom_macs.items()
        }

    def atom_cost(self, block: int, kernel: int) -> float:
        """Normalised cost c of one atom."""
        return self._costs[(block, kernel)]

    def current_lambda(self) -> float:
        """lambda for the current iteration: the weight, ramped linearly
        over ``ramp_epochs`` (or ``ramp_iters``) counted in optimizer steps.

        Under gradient accumulation (k iterations per step) it is constant
        within a step, so every micro-batch of a step carries the same
        penalty, as k GPUs without accumulation would.
        """
        hub = MessageHub.get_current_instance()
        k = accumulation_of(self)
        step = hub.get_info('iter', 0) // k
        ramp = self.penalty_cfg['ramp_iters']
        if ramp is None:
            max_iters = hub.get_info('max_iters')
            max_epochs = hub.get_info('max_epochs')
            per_epoch = max_iters / max_epochs if max_iters and max_epochs \
                else 1
            ramp = self.penalty_cfg['ramp_epochs'] * per_epoch
        ramp_steps = ramp / k
        w = self.penalty_cfg['weight']
        return w if ramp_steps <= 0 else w * min(1.0, step / ramp_steps)

    def penalty(self) -> torch.Tensor:
        """``sum_i c_i |alpha_i|`` over the live atoms."""
        terms = []
        for i, block in enumerate(self._backbone.blocks):
            for k, bn in block.importance_bns().items():
                terms.append(bn.weight.abs().sum() * self._costs[(i, k)])
        return torch.stack(terms).sum() if terms else torch.zeros(())

    def update_params(self, loss: torch.Tensor, step_kwargs=None,
                      zero_kwargs=None) -> None:
        """Contract: called once per training iteration with the task loss,
        exactly like ``OptimWrapper.update_params``; the penalty is added
        before the loss is scaled (accumulation, AMP), so its gradient is
        the same under every wrapper setting.

        Raises:
            RuntimeError: the wrapper was never given the model (built
                without :class:`AtomNASOptimWrapperConstructor`), so the
                penalty could not be applied.
        """
        if self._backbone is None and self.penalty_cfg['weight'] > 0:
            raise RuntimeError(
                f'{type(self).__name__}: the L1 penalty has no model to act '
                "on; set optim_wrapper.constructor='atomnas_mm."
                "AtomNASOptimWrapperConstructor' in the config")
        if self.penalty_cfg['weight'] > 0:
            lam = self.current_lambda()
            pen = self.penalty()
            hub = MessageHub.get_current_instance()
            hub.update_scalar('train/l1_lambda', lam)
            hub.update_scalar('train/l1_penalty', float(pen.detach()))
            if lam > 0:
                loss = loss + lam * pen.to(loss.dtype)
        super().update_params(loss, step_kwargs, zero_kwargs)


@OPTIM_WRAPPERS.register_module()
class AtomNASOptimWrapper(L1PenaltyMixin, OptimWrapper):
    """mmengine's ``OptimWrapper`` plus the FLOPs-aware L1 penalty.

    Build it with :class:`AtomNASOptimWrapperConstructor`, which hands it
    the model.
    """

    def __init__(self, optimizer, penalty: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(optimizer, **kwargs)
        self._init_penalty(penalty)


@OPTIM_WRAPPERS.register_module()
class AtomNASAmpOptimWrapper(L1PenaltyMixin, AmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` plus the FLOPs-aware L1 penalty."""

    def __init__(self, optimizer, penalty: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(optimizer=optimizer, **kwargs)
        self._init_penalty(penalty)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class AtomNASOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """The default constructor, with the recipe's weight decay (conv and
    linear weights only: none on BN parameters or biases) and the model
    handed to the penalty wrapper."""

    def __init__(self, optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        if optim_wrapper_cfg.get('optimizer', {}).get('weight_decay'):
            paramwise_cfg.setdefault('norm_decay_mult', 0.0)
            paramwise_cfg.setdefault('bias_decay_mult', 0.0)
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def __call__(self, model: nn.Module):
        wrapper = super().__call__(model)
        if isinstance(wrapper, L1PenaltyMixin):
            wrapper.attach(model)
        return wrapper
