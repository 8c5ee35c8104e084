"""The atoms' importance over time: ``alpha_hat``, a momentum average of each
atom's BN gamma.

Two sources, one interface (``alpha_hat``, ``update``, ``follow``,
``state_dict``):

* :class:`EMAImportance` (the default, as in the authors' code):
  ``alpha_hat`` *is* the gamma held by the EMA copy of the weights
  (``atomnas_mm.EMAHook``), whose decay warms up per step; nothing is
  stored twice, and the shrink transaction already reshapes the EMA copy.
* :class:`ImportanceTracker`: an average of its own, for runs without an
  EMA copy (or to keep the earlier fixed-beta average).
"""
from __future__ import annotations

from typing import Callable, Dict, Mapping

import torch
from torch import Tensor

from ...models.arch.spec import Key


def current_alpha(backbone) -> Dict[Key, Tensor]:
    """Key -> the gammas of that kernel's depthwise BN (detached, in the
    parameters' dtype): every atom's importance now."""
    return {(i, k): bn.weight.detach()
            for i, b in enumerate(backbone.blocks)
            for k, bn in b.importance_bns().items()}


def warmup_decay(decay: float, n: int) -> float:
    """The decay of a moving average at its ``n``-th update (from 1):
    ``min(decay, (1 + n) / (10 + n))``, TensorFlow's ``num_updates`` rule,
    which the authors' EMA applies with the global step. An average that
    starts from the initial weights follows them within tens of steps
    instead of ``1 / (1 - decay)``."""
    return min(decay, (1.0 + n) / (10.0 + n))


class ImportanceTracker:
    """``alpha_hat <- d * alpha_hat + (1 - d) * alpha`` per atom, started at
    the gammas when training starts.

    Args:
        momentum: The decay ``d`` (alpha_hat's beta), in [0, 1).
        warmup: ``d`` at the n-th update is :func:`warmup_decay` (the
            authors' rule); False keeps ``d`` fixed from the first step.
    """

    def __init__(self, momentum: float, warmup: bool = True) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f'momentum (beta) must be in [0, 1), got '
                             f'{momentum}')
        self.momentum = momentum
        self.warmup = warmup
        self.updates = 0
        self.alpha_hat: Dict[Key, Tensor] = {}

    def start(self, backbone) -> None:
        """Begin at the current gammas (unless resumed)."""
        if not self.alpha_hat:
            self.alpha_hat = {k: v.clone()
                              for k, v in current_alpha(backbone).items()}

    @torch.no_grad()
    def update(self, backbone) -> None:
        """One optimizer step's update."""
        self.updates += 1
        d = warmup_decay(self.momentum, self.updates) if self.warmup \
            else self.momentum
        for key, alpha in current_alpha(backbone).items():
            ah = self.alpha_hat[key]
            ah.mul_(d).add_(alpha.to(ah), alpha=1 - d)

    def follow(self, plan: Mapping[int, Mapping[int, Tensor]]) -> None:
        """Keep the entries of the atoms a plan keeps (the same
        keep-indices as the model)."""
        for key in list(self.alpha_hat):
            if key[0] not in plan:
                continue
            idx = plan[key[0]].get(key[1])
            if idx is None or not len(idx):
                del self.alpha_hat[key]
            else:
                ah = self.alpha_hat[key]
                self.alpha_hat[key] = ah[torch.as_tensor(idx).to(ah.device)]

    def state_dict(self) -> dict:
        return dict(updates=self.updates,
                    alpha_hat={f'{i}.{k}': v.cpu()
                               for (i, k), v in self.alpha_hat.items()})

    def load_state_dict(self, state: Mapping) -> None:
        if 'alpha_hat' not in state:  # written before `updates` was kept
            state = dict(alpha_hat=state, updates=0)
        self.updates = int(state.get('updates', 0))
        self.alpha_hat = {tuple(int(x) for x in key.split('.')): v
                          for key, v in state['alpha_hat'].items()}


class EMAImportance:
    """``alpha_hat`` read from the EMA copy of the weights: the depthwise-BN
    gammas of its backbone (the authors' definition).

    Args:
        ema_backbone: Returns the EMA copy's backbone (it is built after
            this object, in the EMA hook's ``before_run``).
    """

    warmup = True

    def __init__(self, ema_backbone: Callable[[], object]) -> None:
        self._ema_backbone = ema_backbone

    @property
    def alpha_hat(self) -> Dict[Key, Tensor]:
        return current_alpha(self._ema_backbone())

    def start(self, backbone) -> None:
        pass  # the EMA copy starts from the weights (atomnas_mm.EMAHook)

    def update(self, backbone) -> None:
        pass  # the EMA hook averages every optimizer step

    def follow(self, plan) -> None:
        pass  # the transaction reshapes the EMA copy itself

    def state_dict(self) -> dict:
        return {}  # checkpointed with the EMA copy (ema_state_dict)

    def load_state_dict(self, state: Mapping) -> None:
        pass
