"""The search's state, in one object with one owner.

:class:`SearchState` holds everything the search knows between steps: the
cost model and the penalty's per-atom weights, the schedule in optimizer
steps, lambda, the importance average (``alpha_hat``), the shrink
threshold, a budget's plan, and the net's current cost. The
:class:`~atomnas_mm.engine.hooks.DynamicShrinkHook` builds it in
``before_run``, advances it every iteration, tells it of every shape change
(:meth:`after_reshape`, called by the shrink transaction) and checkpoints
it (:meth:`state_dict`), as mmengine's ``EMAHook`` owns its averaged
model. The penalty wrapper only asks it for :meth:`lam` and
:meth:`penalty`; nothing here calls back into the hook or the wrapper.

The ``penalty`` options stay in the optimizer wrapper's config, where users
set them (:func:`parse_penalty` validates them when the wrapper is built).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch
from ...models.arch.cost_model import MEASURE_OF, CostModel, build_cost_model
from ...models.arch.spec import Key
from .budget import BudgetError, BudgetPlan, parse_target

#: The options of ``optim_wrapper.penalty`` and their defaults.
PENALTY_DEFAULTS = dict(
    weight=0.0, ramp_epochs=0, ramp_iters=None, cost=None,
    equal_penalty=False, lut=None, batch=1, input_size=224, num_classes=None,
    target=None, target_by=0.75, plan=None)
PLAN_KEYS = ('lead', 'shape', 'rank')


def parse_penalty(penalty: Optional[Mapping]) -> dict:
    """Validate ``optim_wrapper.penalty`` and fill in its defaults.

    Options (see the search guide): ``weight`` (lambda; with a target its
    start), ``ramp_epochs`` / ``ramp_iters`` (lambda rises linearly from 0
    per optimizer step), ``cost`` (``'macs'``, ``'params'``, ``'latency'``
    with ``lut``, or ``'equal'``; default the target's measure, else
    MACs), ``equal_penalty`` (alias of ``cost='equal'``), ``lut``,
    ``batch``, ``input_size``, ``num_classes`` (default: the model head's),
    ``target`` (``dict(macs=...)``, ``params`` or ``latency`` in ms),
    ``target_by`` (fraction of training) and ``plan``
    (``dict(lead=0.2, shape='linear', rank='block')`` of
    :class:`BudgetPlan`).

    Raises:
        ValueError / BudgetError: one line naming the option and the fix.
    """
    if 'controller' in (penalty or {}):
        raise BudgetError(
            'penalty.controller: a budget no longer scales lambda (it '
            'follows a planned descent with lambda = weight, see the budget '
            'guide); remove controller (the plan takes penalty.plan=dict('
            'lead=..., shape=...))')
    unknown = set(penalty or {}) - set(PENALTY_DEFAULTS)
    if unknown:
        raise ValueError(f'penalty: unknown option {sorted(unknown)[0]!r} '
                         f'(options: {", ".join(PENALTY_DEFAULTS)})')
    cfg = dict(PENALTY_DEFAULTS, **(penalty or {}))
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
                              '(the penalty makes the atoms to remove '
                              'dead)')
        by = cfg['target_by']
        if isinstance(by, bool) or not isinstance(by, (int, float)) or \
                not 0 < by <= 1:
            raise BudgetError(f'penalty.target_by: a fraction of training '
                              f'in (0, 1], got {by!r}')
    bad = set(cfg['plan'] or {}) - set(PLAN_KEYS)
    if bad:
        raise BudgetError(f'penalty.plan: unknown option {sorted(bad)[0]!r} '
                          f'(options: {", ".join(PLAN_KEYS)})')
    cfg['cost'] = cost
    cfg['target'] = target
    return cfg


class SearchState:
    """What the search knows; see the module docstring.

    Args:
        backbone: The searched :class:`AtomNASNet` (the runner model's).
        penalty: :func:`parse_penalty`'s output.
        num_classes: Classifier width counted in totals when the penalty
            does not say (the model head's).
        threshold: Importance at or below which an atom is dead.
        importance: Where ``alpha_hat`` comes from
            (:class:`~atomnas_mm.engine.search.importance.EMAImportance` or
            :class:`~atomnas_mm.engine.search.importance.ImportanceTracker`).

    Attributes:
        cost_model: The search's one measure of nets and atoms.
        budget: The target's :class:`BudgetPlan`, or None.
        step: Optimizer steps done (what lambda's schedule counts).
        cost: The net's cost now (the cost model's unit); ``macs`` in MACs.
        initial_macs: The supernet's MACs.
    """

    def __init__(self, backbone, penalty: dict, num_classes: int,
                 threshold: float, importance) -> None:
        self.backbone = backbone
        self.cfg = penalty
        self.threshold = float(threshold)
        self.importance = importance
        spec = backbone.arch_spec
        self.cost_model: CostModel = build_cost_model(
            penalty['cost'], penalty['input_size'],
            penalty['num_classes'] or num_classes, penalty['lut'],
            penalty['batch'])
        if penalty['cost'] == 'latency':
            self.cost_model.table.check_spec(spec, 'the supernet')
        # The average atom of the initial net weighs 1 (the authors divide
        # by the atom count plus 1e-5; their equal penalty is 1, as is).
        costs = self.cost_model.penalty_costs(spec)
        total = sum(n * costs[(i, k)] for i, b in enumerate(spec.blocks)
                    for k, n in b.kernels.items())
        self._norm = 1.0 if penalty['cost'] == 'equal' else \
            total / (spec.num_atoms + 1e-5) or 1.0
        self.budget: Optional[BudgetPlan] = \
            self._start_budget(spec) if penalty['target'] else None
        self.steps_per_epoch = self.max_steps = 1
        self.accumulation = 1
        self.step = 0
        self.initial_macs = self.cost_model.macs(spec)
        self._refresh(spec)

    # ------------------------------------------------------------ set-up
    def _start_budget(self, spec) -> BudgetPlan:
        cm = self.cost_model
        key, value = self.cfg['target']
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
        return BudgetPlan(value, initial, **dict(self.cfg['plan'] or {}))

    def set_schedule(self, max_iters: int, max_epochs: Optional[int],
                     accumulation: int = 1) -> None:
        """The run's length; everything is counted in optimizer steps.

        Args:
            max_iters: Training iterations of the run.
            max_epochs: Its epochs (None for an iteration-based loop: an
                'epoch' of the ramp is then one iteration).
            accumulation: Iterations per optimizer step.
        """
        self.accumulation = max(1, int(accumulation))
        self.max_steps = max(1, -(-int(max_iters) // self.accumulation))
        self.steps_per_epoch = max(1, self.max_steps // max_epochs) \
            if max_epochs else 1

    @property
    def ramp_steps(self) -> int:
        ramp = self.cfg['ramp_iters']
        if ramp is not None:
            return int(ramp) // self.accumulation
        return int(self.cfg['ramp_epochs'] * self.steps_per_epoch)

    @property
    def target_step(self) -> int:
        """Optimizer step (0-based) by which the target is reached."""
        return int(round(self.cfg['target_by'] * self.max_steps))

    def check_schedule(self) -> None:
        """With a target: refuse, in one line, a ``target_by`` that comes
        before the lambda ramp ends."""
        if self.budget is None:
            return
        k = self.accumulation
        ramp, by = self.ramp_steps * k, self.target_step * k
        max_iters = self.max_steps * k
        if by <= ramp:
            frac = ramp / max(max_iters, 1)
            fix = f'set target_by above {frac:.2f} or shorten the ramp' \
                if frac < 1 else 'shorten the ramp'
            raise BudgetError(
                f'penalty.target_by={self.cfg["target_by"]} is iteration '
                f'{by} of {max_iters}, not after the lambda ramp ({ramp} '
                f'iterations): {fix}')

    def begin_iteration(self, iteration: int) -> None:
        """Called before every training iteration (0-based)."""
        self.step = iteration // self.accumulation

    # ------------------------------------------------------------ penalty
    def _refresh(self, spec) -> None:
        """Costs for the net's current shape: its cost, and the penalty's
        weights (the cost model's, marginal for latency, over the initial
        net's mean; at least 0.01, so that a flat stretch of a latency
        curve never makes an atom free)."""
        self.weights: Dict[Key, float] = {
            key: max(0.01, c / self._norm)
            for key, c in self.cost_model.penalty_costs(spec).items()}
        self.cost = self.cost_model.total(spec)
        self.macs = self.cost_model.macs(spec)

    def atom_cost(self, block: int, kernel: int) -> float:
        """Normalised penalty weight of one atom of ``kernel`` in
        ``block``."""
        return self.weights[(block, kernel)]

    def lam(self) -> float:
        """lambda for this optimizer step, the one place it is computed:
        ``weight`` ramped linearly over ``ramp_steps`` (the same for every
        micro-batch of an accumulated step), and 0 for good once a target
        is reached."""
        if self.budget is not None and self.budget.done:
            return 0.0
        w, ramp = self.cfg['weight'], self.ramp_steps
        return w if ramp <= 0 else w * min(1.0, self.step / ramp)

    def planned_cost(self) -> float:
        """With a target: the cost the plan allows after this step."""
        return self.budget.plan(self.step + 1, self.ramp_steps,
                                self.target_step)

    def penalty(self) -> torch.Tensor:
        """``sum_i c_i |alpha_i|`` over the live atoms (differentiable)."""
        terms = [bn.weight.abs().sum() * self.weights[(i, k)]
                 for i, block in enumerate(self.backbone.blocks)
                 for k, bn in block.importance_bns().items()]
        return torch.stack(terms).sum() if terms else torch.zeros(())

    # ------------------------------------------------------------ changes
    def after_reshape(self, plan: Mapping[int, Mapping[int, torch.Tensor]]
                      ) -> None:
        """Told by the shrink transaction after the net changed shape."""
        self.importance.follow(plan)
        self._refresh(self.backbone.arch_spec)

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return dict(importance=self.importance.state_dict(),
                    initial_macs=self.initial_macs,
                    budget=None if self.budget is None
                    else self.budget.state_dict())

    def load_state_dict(self, state: Mapping) -> None:
        self.importance.load_state_dict(state.get('importance') or {})
        if state.get('initial_macs') is not None:
            self.initial_macs = state['initial_macs']
        if self.budget is not None and state.get('budget') is not None:
            self.budget.load_state_dict(state['budget'])
        self._refresh(self.backbone.arch_spec)

    def __repr__(self) -> str:
        return (f'SearchState({self.cost_model.describe()}, step '
                f'{self.step}/{self.max_steps}, cost '
                f'{self.cost_model.format(self.cost)})')

