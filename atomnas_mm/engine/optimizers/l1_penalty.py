"""The cost-aware L1 penalty on the atoms' importance factors.

``loss + lambda * sum_i c_i |alpha_i|``, where ``alpha_i`` is the gamma of
the BN after atom i's depthwise conv and ``c_i`` its cost (MACs by default)
normalised so that the average atom of the initial supernet costs 1. The
wrapper adds the term; lambda, the costs and the schedule belong to the
search state (:class:`~atomnas_mm.engine.search.SearchState`), which
:class:`~atomnas_mm.engine.hooks.DynamicShrinkHook` builds from the
``penalty`` options given here and binds to the wrapper before training.
"""
from typing import Optional

import torch
from mmengine.logging import MessageHub
from mmengine.optim import (AmpOptimWrapper, DefaultOptimWrapperConstructor,
                            OptimWrapper)
from torch import nn

from ...registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS
from ..search.state import SearchState, parse_penalty
from ..utils import find_backbone


class L1PenaltyMixin:
    """Adds the penalty to the loss in ``update_params``.

    Contract (what subclasses and the hook rely on):

    * ``update_params(loss)`` is called once per training iteration with
      the task loss, as mmengine's ``OptimWrapper.update_params``. The
      penalty is added *before* the loss is scaled for gradient
      accumulation or AMP, so its gradient is the same under every wrapper
      setting, and identical on every DDP rank.
    * lambda and the penalty are asked of the bound :class:`SearchState`
      (:meth:`bind_search`), once per call; the wrapper keeps no state of
      the search and saves none.
    * With ``weight > 0`` and no search state bound, the first step is
      refused in one line naming what is missing.

    Args:
        penalty: The ``penalty`` options (:func:`parse_penalty`), validated
            when the wrapper is built.
    """

    def _init_penalty(self, penalty: Optional[dict]) -> None:
        self.penalty_cfg = parse_penalty(penalty)
        self.search: Optional[SearchState] = None
        self._model_given = False

    def attach(self, model: nn.Module) -> None:
        """Told of the model by :class:`AtomNASOptimWrapperConstructor`;
        a model without an AtomNAS backbone is refused here, at build
        time."""
        find_backbone(model)
        self._model_given = True

    def bind_search(self, search: SearchState) -> None:
        """The search state to ask for lambda and the penalty."""
        self.search = search

    def update_params(self, loss: torch.Tensor, step_kwargs=None,
                      zero_kwargs=None) -> None:
        """``OptimWrapper.update_params`` with the penalty added first (see
        the class contract).

        Raises:
            RuntimeError: the penalty has no search state to act on.
        """
        if self.penalty_cfg['weight'] > 0:
            if self.search is None:
                raise RuntimeError(self._unbound_reason())
            lam = self.search.lam()
            pen = self.search.penalty()
            hub = MessageHub.get_current_instance()
            hub.update_scalar('train/l1_lambda', lam)
            hub.update_scalar('train/l1_penalty', float(pen.detach()))
            if lam > 0:
                loss = loss + lam * pen.to(loss.dtype)
        super().update_params(loss, step_kwargs, zero_kwargs)

    def _unbound_reason(self) -> str:
        name = type(self).__name__
        if not self._model_given:
            return (f'{name}: the L1 penalty has no model to act on; set '
                    "optim_wrapper.constructor='atomnas_mm."
                    "AtomNASOptimWrapperConstructor' in the config")
        return (f'{name}: the L1 penalty needs the search state of '
                "dict(type='atomnas_mm.DynamicShrinkHook') in custom_hooks "
                '(it owns lambda, the costs and the schedule)')


@OPTIM_WRAPPERS.register_module()
class AtomNASOptimWrapper(L1PenaltyMixin, OptimWrapper):
    """mmengine's ``OptimWrapper`` plus the cost-aware L1 penalty.

    Build it with :class:`AtomNASOptimWrapperConstructor` and configure
    :class:`~atomnas_mm.engine.hooks.DynamicShrinkHook`.
    """

    def __init__(self, optimizer, penalty: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(optimizer, **kwargs)
        self._init_penalty(penalty)


@OPTIM_WRAPPERS.register_module()
class AtomNASAmpOptimWrapper(L1PenaltyMixin, AmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` plus the cost-aware L1 penalty."""

    def __init__(self, optimizer, penalty: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(optimizer=optimizer, **kwargs)
        self._init_penalty(penalty)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class AtomNASOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """The default constructor with the recipe's weight decay, and the model
    handed to the penalty wrapper.

    Weight decay (the authors' ``mnas`` policy, parameter by parameter):
    every conv weight (depthwise too) and every linear layer's weight and
    bias (the classifier's); no BN parameter and no conv bias (SE's). A
    ``paramwise_cfg`` that sets ``bias_decay_mult`` itself applies it to
    every bias, the classifier's included (``bias_decay_mult=0.0``: no bias
    decays, this project's earlier rule).
    """

    def __init__(self, optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        self._linear_bias_decay = False
        if optim_wrapper_cfg.get('optimizer', {}).get('weight_decay'):
            paramwise_cfg.setdefault('norm_decay_mult', 0.0)
            if 'bias_decay_mult' not in paramwise_cfg:
                paramwise_cfg['bias_decay_mult'] = 0.0
                self._linear_bias_decay = True
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def __call__(self, model: nn.Module):
        if self._linear_bias_decay:
            # Custom keys take precedence over bias_decay_mult in mmengine;
            # the name is the whole parameter name, so nothing else matches.
            keys = dict(self.paramwise_cfg.get('custom_keys') or {})
            for name, m in model.named_modules():
                if isinstance(m, nn.Linear) and m.bias is not None:
                    keys.setdefault(f'{name}.bias', dict(decay_mult=1.0))
            self.paramwise_cfg['custom_keys'] = keys
        wrapper = super().__call__(model)
        if isinstance(wrapper, L1PenaltyMixin):
            wrapper.attach(model)
        return wrapper
