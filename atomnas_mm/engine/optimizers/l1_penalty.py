"""The cost-aware L1 penalty on the atoms' importance factors, and the
lambda controller of a search to a budget.

``loss + lambda(t) * sum_i c_i |alpha_i|`` where ``alpha_i`` is the gamma of
the BN after atom i's depthwise conv and ``c_i`` its cost (MACs by default;
params, latency from a measured table, or 1 for every atom) normalised so
that the average atom of the initial supernet costs 1. All atoms of one
kernel in one block cost the same, so the penalty is a sum over (block,
kernel) of ``c * |gamma|.sum()``: nothing per atom needs slicing when atoms
go.

The wrapper owns the search's cost measure (:attr:`cost_model`) and, with a
``target``, the :class:`BudgetController` that scales lambda; the shrink
hook reads both from it.
"""
from typing import Dict, Optional, Tuple

import torch
from mmengine.dist import broadcast, get_world_size
from mmengine.logging import MessageHub
from mmengine.optim import (AmpOptimWrapper, DefaultOptimWrapperConstructor,
                            OptimWrapper)
from torch import nn

from ...models.arch.cost_model import (MEASURE_OF, CostModel,
                                       build_cost_model)
from ...registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS
from ...utils.seams import accumulation_of
from ..search.budget import BudgetController, BudgetError, parse_target
from ..utils import find_backbone, unwrap

BUDGET_STATE_KEY = 'atomnas_budget'
CONTROLLER_KEYS = ('kp', 'ki', 'lead', 'scale_range')


class L1PenaltyMixin:
    """Adds the penalty to the loss in ``update_params``, before the loss is
    scaled for gradient accumulation or AMP, so both stay correct; under DDP
    the penalty's gradient is identical on every rank.

    Args (``penalty`` dict of the wrapper config):
        weight: lambda (1.8e-4 / 1.2e-4 / 1.0e-4 for A / B / C). With a
            ``target`` it is lambda's starting value, which the controller
            scales.
        ramp_epochs: Epochs over which lambda rises linearly from 0, per
            iteration. ``ramp_iters`` may be given instead.
        cost: The measure of atoms and nets: ``'macs'``, ``'params'``,
            ``'latency'`` (with ``lut``) or ``'equal'`` (every atom weighs
            1, the paper's Table 2 baseline; sizes still in MACs). Default:
            the target's measure, else ``'macs'``. The shrink hook's
            ``delta``, the target and the logged ``cost`` use it.
        equal_penalty: Alias of ``cost='equal'`` (older configs).
        lut: Latency table (JSON of ``tools/analysis_tools/latency_lut.py``)
            for ``cost='latency'``.
        batch: Batch the latency is meant at (must be the table's).
        input_size: Input (H, W) or side at which costs are counted.
        num_classes: Classifier width counted in totals; default the
            model's ``head.num_classes``, else 1000.
        target: ``dict(macs=...)``, ``dict(params=...)`` or
            ``dict(latency=ms)``: the cost the search must end at. None
            (default): lambda follows the ramp only.
        target_by: Fraction of training by which the target is reached;
            what is not removed by then is removed at once (least important
            first, not function-preserving, logged), and the rest of
            training fine-tunes the net at its final size with lambda 0.
        controller: ``dict(kp, ki, lead, scale_range)`` of
            :class:`BudgetController` (defaults work for the shipped
            configs).
    """

    def _init_penalty(self, penalty: Optional[dict]) -> None:
        cfg = dict(weight=0.0, ramp_epochs=0, ramp_iters=None, cost=None,
                   equal_penalty=False, lut=None, batch=1, input_size=224,
                   num_classes=None, target=None, target_by=0.5,
                   controller=None)
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
        target = parse_target(cfg['target'])
        cost = cfg['cost']
        if cfg['equal_penalty']:
            if cost not in (None, 'equal'):
                raise BudgetError(f"penalty: equal_penalty=True is cost="
                                  f"'equal', but cost={cost!r}; set one")
            cost = 'equal'
        if cost is None:
            cost = target[0] if target else 'macs'
        if cost not in MEASURE_OF:
            raise BudgetError(f'penalty.cost: {cost!r} is not one of '
                              f'{", ".join(MEASURE_OF)}')
        if target and MEASURE_OF[cost] != target[0]:
            raise BudgetError(
                f'penalty.target: a {target[0]} target needs penalty.cost='
                f"'{target[0]}'" + (' and penalty.lut=PATH'
                                    if target[0] == 'latency' else '') +
                f" (cost is '{cost}', counted in {MEASURE_OF[cost]})")
        if target:
            if cfg['weight'] <= 0:
                raise BudgetError('penalty.weight: must be > 0 with a target '
                                  '(it is the starting lambda the '
                                  'controller scales)')
            by = cfg['target_by']
            if isinstance(by, bool) or not isinstance(by, (int, float)) or \
                    not 0 < by <= 1:
                raise BudgetError(f'penalty.target_by: a fraction of '
                                  f'training in (0, 1], got {by!r}')
        ctl = dict(cfg['controller'] or {})
        bad = set(ctl) - set(CONTROLLER_KEYS)
        if bad:
            raise BudgetError(f'penalty.controller: unknown option '
                              f'{sorted(bad)[0]!r} (options: '
                              f'{", ".join(CONTROLLER_KEYS)})')
        cfg['cost'] = cost
        self.penalty_cfg = cfg
        self.target: Optional[Tuple[str, float]] = target
        self.cost_model: Optional[CostModel] = None
        self.budget: Optional[BudgetController] = None
        self._backbone = None
        self._costs: Dict[Tuple[int, int], float] = {}
        self._shape = None          # the net's shape the costs are for
        self._norm = 1.0            # mean penalty cost of the initial net
        self._cost_now = None       # (shape, cost) cache
        self._live_threshold = None  # set by the shrink hook
        self._lambda_at = None      # (optimizer step, lambda) last computed

    # ------------------------------------------------------------ set-up
    def attach(self, model: nn.Module) -> None:
        """Find the backbone, build the cost model and cost the initial
        net's atoms (the normalisation); with a target, check it and start
        the controller.

        Raises:
            BudgetError / CostModelError: one line naming the field.
        """
        cfg = self.penalty_cfg
        self._backbone = find_backbone(model)
        spec = self._backbone.arch_spec
        num_classes = cfg['num_classes']
        if num_classes is None:
            num_classes = getattr(getattr(unwrap(model), 'head', None),
                                  'num_classes', None) or 1000
        self.cost_model = build_cost_model(
            cfg['cost'], cfg['input_size'], num_classes, cfg['lut'],
            cfg['batch'])
        if cfg['cost'] == 'latency':
            self.cost_model.table.check_spec(spec, 'the supernet')
        costs = self.cost_model.penalty_costs(spec)
        total = sum(n * costs[(i, k)] for i, b in enumerate(spec.blocks)
                    for k, n in b.kernels.items())
        self._norm = total / max(spec.num_atoms, 1) or 1.0
        self._set_costs(spec)
        if self.target:
            self.budget = self._start_budget(spec)

    def _start_budget(self, spec) -> BudgetController:
        cm = self.cost_model
        key, value = self.target
        initial = cm.total(spec)
        if value >= initial:
            raise BudgetError(
                f'penalty.target.{key}: {cm.format(value)} is not below the '
                f'supernet\'s {cm.format(initial)}: nothing to search (set a '
                'smaller target, or train the supernet without one)')
        fixed = cm.fixed(spec)
        if value < fixed:
            raise BudgetError(
                f'penalty.target.{key}: {cm.format(value)} is below what '
                f'the fixed parts (stem, first block, head, classifier) '
                f'cost, {cm.format(fixed)}: no search can reach it')
        ctl = dict(self.penalty_cfg['controller'] or {})
        return BudgetController(value, initial, **ctl)

    def bind_search(self, threshold: float) -> None:
        """Called by the shrink hook: the importance below which atoms die
        (an atom above it is 'live' for the controller)."""
        self._live_threshold = float(threshold)

    def _set_costs(self, spec) -> None:
        """Penalty weights for the net's current shape: the cost model's
        (marginal for latency), over the initial net's mean, at least
        0.01 (a flat stretch of a latency curve must not make an atom
        free of penalty)."""
        self._costs = {key: max(0.01, c / self._norm)
                       for key, c in self.cost_model.penalty_costs(spec
                                                                   ).items()}
        self._shape = self._shape_of()

    def _shape_of(self) -> tuple:
        return tuple((i, k, bn.weight.shape[0])
                     for i, block in enumerate(self._backbone.blocks)
                     for k, bn in block.importance_bns().items())

    def atom_cost(self, block: int, kernel: int) -> float:
        """Normalised penalty weight c of one atom."""
        return self._costs[(block, kernel)]

    # ------------------------------------------------------------ schedule
    def _iters_per_epoch(self) -> int:
        hub = MessageHub.get_current_instance()
        max_iters = hub.get_info('max_iters')
        max_epochs = hub.get_info('max_epochs')
        return max_iters // max_epochs if max_iters and max_epochs else 1

    def ramp_iters(self) -> int:
        ramp = self.penalty_cfg['ramp_iters']
        if ramp is None:
            ramp = self.penalty_cfg['ramp_epochs'] * self._iters_per_epoch()
        return int(ramp)

    def target_iter(self) -> int:
        """Iteration (0-based) by which the target is reached."""
        max_iters = MessageHub.get_current_instance().get_info('max_iters')
        return int(round(self.penalty_cfg['target_by'] * (max_iters or 0)))

    def check_schedule(self) -> None:
        """With a target: refuse, in one line, a ``target_by`` that comes
        before the lambda ramp ends."""
        if self.budget is None:
            return
        max_iters = MessageHub.get_current_instance().get_info('max_iters')
        ramp, by = self.ramp_iters(), self.target_iter()
        if by <= ramp:
            frac = ramp / max(max_iters or 1, 1)
            fix = f'set target_by above {frac:.2f} or shorten the ramp' \
                if frac < 1 else 'shorten the ramp'
            raise BudgetError(
                f'penalty.target_by={self.penalty_cfg["target_by"]} is '
                f'iteration {by} of {max_iters}, not after the lambda ramp '
                f'({ramp} iterations): {fix}')

    # ------------------------------------------------------------ costs now
    def current_cost(self) -> float:
        """The net's cost now (the cost model's unit), cached per shape."""
        shape = self._shape_of()
        if self._cost_now is None or self._cost_now[0] != shape:
            self._cost_now = (shape, self.cost_model.total(
                self._backbone.arch_spec))
        return self._cost_now[1]

    @torch.no_grad()
    def live_cost(self) -> float:
        """The cost of the net without the atoms whose |gamma| is below the
        shrink threshold: where the net is heading. Rank 0's value on
        every rank."""
        if self._live_threshold is None:
            raise BudgetError(
                'penalty.target: needs atomnas_mm.DynamicShrinkHook in '
                'custom_hooks (it removes the atoms)')
        keys, live = [], []
        for i, block in enumerate(self._backbone.blocks):
            for k, bn in block.importance_bns().items():
                keys.append((i, k))
                live.append((bn.weight.detach().abs() >=
                             self._live_threshold).sum())
        counts = dict(zip(keys, torch.stack(live).tolist())) if live else {}
        value = self.cost_model.total_with(self._backbone.arch_spec, counts)
        if get_world_size() > 1:
            t = torch.tensor([value], dtype=torch.float64)
            broadcast(t, 0)
            value = float(t.item())
        return value

    # ------------------------------------------------------------ lambda
    def current_lambda(self) -> float:
        """lambda for this iteration; the one place it is computed.

        ``weight * ramp(t)``, t counted in optimizer steps, and with a
        target times the controller's multiplier
        (:meth:`BudgetController.scale`): it follows the planned descent to
        the target, and is 0 once the net's cost is at the target.

        Under gradient accumulation (k iterations per step) lambda is
        computed once per optimizer step and held for its k micro-batches,
        so every micro-batch carries the same penalty (as k GPUs without
        accumulation would) and the controller advances once per step.
        """
        hub = MessageHub.get_current_instance()
        k = accumulation_of(self)
        step = hub.get_info('iter', 0) // k
        if self._lambda_at is not None and self._lambda_at[0] == step:
            return self._lambda_at[1]
        ramp = self.ramp_iters() / k
        w = self.penalty_cfg['weight']
        lam = w if ramp <= 0 else w * min(1.0, step / ramp)
        if self.budget is not None:
            lam *= self.budget.scale(step, int(ramp),
                                     self.target_iter() // k,
                                     self.live_cost(), self.current_cost())
        self._lambda_at = (step, lam)
        return lam

    def penalty(self) -> torch.Tensor:
        """``sum_i c_i |alpha_i|`` over the live atoms."""
        if self._shape_of() != self._shape:  # atoms were removed
            self._set_costs(self._backbone.arch_spec)
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

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """The optimizer's (and loss scaler's) state, plus the budget
        controller's, so that ``--resume`` continues its law."""
        state = super().state_dict()
        if self.budget is not None:
            state[BUDGET_STATE_KEY] = self.budget.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        budget = state_dict.pop(BUDGET_STATE_KEY, None)
        if budget is not None and self.budget is not None:
            self.budget.load_state_dict(budget)
        super().load_state_dict(state_dict)


@OPTIM_WRAPPERS.register_module()
class AtomNASOptimWrapper(L1PenaltyMixin, OptimWrapper):
    """mmengine's ``OptimWrapper`` plus the cost-aware L1 penalty (and the
    budget controller).

    Build it with :class:`AtomNASOptimWrapperConstructor`, which hands it
    the model.
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
