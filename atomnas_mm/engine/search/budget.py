"""Search to a budget: the target, and the plan that takes the net there.

Pure Python (no torch, no runner), so the plan is tested by hand.

The search keeps the paper's lambda (``weight``, ramped) and follows a
planned descent of the net's cost instead of driving lambda:

* ``plan(t)``: the supernet's cost until the lambda ramp ends, then a
  descent that reaches the target ``lead`` of the way before ``by``
  (``target_by`` of training) and holds it. Linear in cost by default;
  ``shape='cubic'`` removes more early (Zhu and Gupta's gradual pruning).
* At every shrink check the dead atoms go first (function-preserving);
  if the net is still above ``plan(t)``, the least important atoms go
  down to it, in groups of the channel divisor. Importance is
  ``max(|alpha|, |alpha_hat|)`` relative to its block's mean
  (``rank='block'``, default): the cost-weighted penalty pulls the gammas
  of costly blocks lowest, and ranking them against the whole net
  (``rank='global'``) empties those blocks first. A step of the plan is
  small, so the net adapts as it would to gradual pruning, and lambda
  meanwhile pushes the unimportant atoms to the threshold, so that what
  goes by rank is mostly nearly dead.
* Once the net's cost is at or below the target, lambda is 0 for good:
  atoms never come back and removal stops at the target, so more penalty
  would only shrink gammas of atoms that may no longer go. The rest of
  training trains the final net.

An earlier version drove lambda with a feedback controller on the atoms
above the threshold. Gammas need many steps to reach the threshold
whatever lambda is, so the controller wound lambda up (200x in the digits
demo), every gamma fell together and the net's function collapsed before
any atom was removed; on short schedules the one-pass net never
recovered. This plan bounds how fast the net shrinks instead.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional

TARGET_KEYS = ('macs', 'params', 'latency')
SHAPES = ('linear', 'cubic')
RANKS = ('block', 'global')


class BudgetError(ValueError):
    """A budget that cannot be searched for: one line naming the field and
    the fix."""


def parse_target(target, field: str = 'penalty.target'):
    """``dict(macs=360e6)`` -> ``('macs', 360e6)``; None -> None.

    Raises:
        BudgetError: not a one-key dict of a known measure with a positive
            finite number.
    """
    if target is None:
        return None
    if not isinstance(target, Mapping) or len(target) != 1:
        raise BudgetError(f'{field}: give one measure, e.g. '
                          f'dict(macs=360e6), got {target!r}')
    (key, value), = target.items()
    if key not in TARGET_KEYS:
        raise BudgetError(f'{field}: unknown measure {key!r} (use one of '
                          f'{", ".join(TARGET_KEYS)}; latency in ms)')
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise BudgetError(f'{field}.{key}: must be a positive number, got '
                          f'{value!r}')
    return key, float(value)


class BudgetPlan:
    """The planned descent to ``target`` and what the search did of it.

    Its state is a function of the steps and of costs counted from the
    spec, identical on every rank; the search state saves it (resume).

    Args:
        target: The cost to reach (the cost model's unit).
        initial: The supernet's cost.
        lead: Fraction of the descent (ramp end to ``by``) by which the plan
            reaches the target early, so that a check or two remain.
        shape: ``'linear'`` or ``'cubic'`` (see the module docstring).
        rank: ``'block'`` or ``'global'``: what the least important atoms
            are measured against (see the module docstring).

    Attributes:
        done: The target was reached (lambda is 0 from then on).
        reached_step: The optimizer step it was reached at.
        removed_dead / removed_ranked: Cost removed as dead atoms and by
            rank (the plan and ``target_by``).
        ranked_max: The largest importance an atom removed by rank had.
    """

    def __init__(self, target: float, initial: float, lead: float = 0.2,
                 shape: str = 'linear', rank: str = 'block') -> None:
        if not 0 < target < initial:
            raise BudgetError(f'target {target:g} must be below the '
                              f'supernet\'s cost {initial:g}')
        if not 0 <= lead < 1:
            raise BudgetError(f'penalty.plan.lead: must be in [0, 1), got '
                              f'{lead!r}')
        if shape not in SHAPES:
            raise BudgetError(f'penalty.plan.shape: one of {SHAPES}, got '
                              f'{shape!r}')
        if rank not in RANKS:
            raise BudgetError(f'penalty.plan.rank: one of {RANKS}, got '
                              f'{rank!r}')
        self.target = float(target)
        self.rank = rank
        self.initial = float(initial)
        self.lead = float(lead)
        self.shape = shape
        self.done = False
        self.reached_step: Optional[int] = None
        self.removed_dead = 0.0
        self.removed_ranked = 0.0
        self.ranked_max = 0.0

    # ------------------------------------------------------------ plan
    def plan_end(self, start: int, by: int) -> float:
        """Step at which the plan reaches the target."""
        return start + (1.0 - self.lead) * (by - start)

    def plan(self, step: int, start: int, by: int) -> float:
        """The planned cost after ``step`` optimizer steps."""
        end = self.plan_end(start, by)
        if step <= start:
            return self.initial
        if step >= end:
            return self.target
        left = 1.0 - (step - start) / max(end - start, 1e-9)
        if self.shape == 'cubic':
            left = left ** 3
        return self.target + (self.initial - self.target) * left

    def reached(self, cost: float) -> bool:
        return cost <= self.target

    def remaining(self, cost: float) -> float:
        """Cost that may still be removed (<= 0: none)."""
        return cost - self.target

    def gap(self, cost: float) -> float:
        """cost / target - 1 (logged as ``cost_gap``)."""
        return cost / self.target - 1.0

    # ------------------------------------------------------------ record
    def record(self, step: int, cost: float, removed: float = 0.0,
               ranked: bool = False, strongest: float = 0.0) -> None:
        """Book a removal (of ``removed`` cost, dead or by rank) and the
        net's cost after it."""
        if ranked:
            self.removed_ranked += removed
            self.ranked_max = max(self.ranked_max, strongest)
        else:
            self.removed_dead += removed
        if self.reached(cost) and not self.done:
            self.done = True
            self.reached_step = step

    def summary(self) -> str:
        """How the target was reached, for the final log line."""
        total = self.removed_dead + self.removed_ranked
        if not total:
            return 'nothing removed'
        share = 100 * self.removed_ranked / total
        how = 'by dead atoms' if share == 0 else \
            f'{100 - share:.0f}% of the removed cost by dead atoms, ' \
            f'{share:.0f}% by rank (largest importance removed ' \
            f'{self.ranked_max:.3g})'
        when = f' at step {self.reached_step}' if self.done else \
            ' (not reached)'
        return f'target {"reached" if self.done else "missed"}{when}: {how}'

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return dict(target=self.target, initial=self.initial,
                    done=self.done, reached_step=self.reached_step,
                    removed_dead=self.removed_dead,
                    removed_ranked=self.removed_ranked,
                    ranked_max=self.ranked_max)

    def load_state_dict(self, state: Mapping) -> None:
        if state.get('target') not in (None, self.target):
            raise BudgetError(
                f'penalty.target: the checkpoint was searched for a target '
                f'of {state["target"]:g}, this config asks for '
                f'{self.target:g}; resume with the same target')
        self.done = bool(state.get('done', False))
        self.reached_step = state.get('reached_step')
        self.removed_dead = float(state.get('removed_dead', 0.0))
        self.removed_ranked = float(state.get('removed_ranked', 0.0))
        self.ranked_max = float(state.get('ranked_max', 0.0))
