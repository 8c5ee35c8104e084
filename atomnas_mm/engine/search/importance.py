"""The atoms' importance over time: ``alpha_hat``, a momentum average of each
atom's BN gamma."""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

import torch
from torch import Tensor

Key = Tuple[int, int]  # (block index, kernel size)


def current_alpha(backbone) -> Dict[Key, Tensor]:
    """Key -> the gammas of that kernel's depthwise BN (float, detached):
    every atom's importance now."""
    return {(i, k): bn.weight.detach().float()
            for i, b in enumerate(backbone.blocks)
            for k, bn in b.importance_bns().items()}


class ImportanceTracker:
    """``alpha_hat <- beta * alpha_hat + (1 - beta) * alpha`` per atom.

    Args:
        momentum: beta, in [0, 1).
    """

    def __init__(self, momentum: float) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f'momentum (beta) must be in [0, 1), got '
                             f'{momentum}')
        self.momentum = momentum
        self.alpha_hat: Dict[Key, Tensor] = {}

    def start(self, backbone) -> None:
        """Begin at the current gammas (unless resumed)."""
        if not self.alpha_hat:
            self.alpha_hat = {k: v.clone()
                              for k, v in current_alpha(backbone).items()}

    @torch.no_grad()
    def update(self, backbone) -> None:
        beta = self.momentum
        for key, alpha in current_alpha(backbone).items():
            ah = self.alpha_hat[key]
            ah.mul_(beta).add_(alpha.to(ah.device), alpha=1 - beta)

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
        return {f'{i}.{k}': v.cpu() for (i, k), v in self.alpha_hat.items()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.alpha_hat = {tuple(int(x) for x in key.split('.')): v.float()
                          for key, v in state.items()}
