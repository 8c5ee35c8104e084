"""Search to a budget: the target, and the controller that drives lambda
toward it. Pure Python (no torch, no runner), so the control law is tested
on a hand-driven simulation.

The control law (one place, :meth:`BudgetController.scale`):

* ``plan(t)``: the cost the net should have at iteration ``t``: the
  supernet's cost until the end of the lambda ramp, then a geometric
  descent (straight in log cost) that reaches the target ``lead`` of the
  descent before ``by`` (``target_by`` of training), then the target. The
  lead leaves the removal, which follows the penalty only once the
  importance average has decayed, time to catch up by ``by``.
* ``e = log(live / plan(t))``: how far behind the plan the net is (> 0:
  too big). ``live`` is the cost of the atoms the penalty has not yet
  pushed under the shrink threshold: the removal that follows lags it by
  the importance average, and a controller that waited for it would wind
  up.
* ``log s += ki * e * dt / H`` (``H``: iterations of the planned descent),
  clamped; lambda multiplier ``exp(log s + kp * e)``, clamped.
* Anti-windup: ``log s`` does not grow while the live cost already falls at
  least as fast as the plan does (a smoothed slope of ``log live``). Gammas
  take many iterations to travel to the threshold whatever lambda is (the
  optimizer bounds their step), so a controller that kept integrating
  through that dead time would end with lambda orders of magnitude too
  large and crush the atoms that should survive.
* Once the net's cost is at or below the target, the multiplier is 0 for
  good: atoms never come back, removal is capped at the target anyway, so
  more penalty would only shrink gammas of atoms that may no longer go,
  regularising the final net for nothing; the rest of training fine-tunes
  the net at its final size.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional

TARGET_KEYS = ('macs', 'params', 'latency')


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


class BudgetController:
    """Scales lambda so that the net's cost follows a planned descent to
    ``target`` (see the module docstring).

    Its state (``log_scale``, ``last_iter``, ``done``) is a function of the
    iteration and of costs computed from the spec and the parameters, so
    it is identical on every rank; it is saved with the optimizer wrapper
    (resume).

    Args:
        target: The cost to reach (the cost model's unit).
        initial: The supernet's cost.
        kp: Proportional gain on the log gap.
        ki: Integral gain: a gap of ``e`` held over the whole descent
            multiplies the scale by ``exp(ki * e)``.
        lead: Fraction of the descent (ramp end to ``by``) by which the plan
            reaches the target early.
        scale_range: Clamp of the multiplier (and of its integral part).
    """

    def __init__(self, target: float, initial: float, kp: float = 2.0,
                 ki: float = 20.0, lead: float = 0.2,
                 scale_range=(1e-2, 1e3)) -> None:
        if not 0 < target < initial:
            raise BudgetError(f'target {target:g} must be below the '
                              f'supernet\'s cost {initial:g}')
        lo, hi = scale_range
        if not 0 < lo <= 1 <= hi:
            raise BudgetError('penalty.controller.scale_range: needs '
                              f'0 < low <= 1 <= high, got {scale_range!r}')
        self.target = float(target)
        self.initial = float(initial)
        if not 0 <= lead < 1:
            raise BudgetError(f'penalty.controller.lead: must be in [0, 1), '
                              f'got {lead!r}')
        self.kp, self.ki, self.lead = float(kp), float(ki), float(lead)
        self.log_lo, self.log_hi = math.log(lo), math.log(hi)
        self.log_scale = 0.0
        self.last_iter: Optional[int] = None
        self.done = False
        self.last_live: Optional[float] = None
        self.slope = 0.0  # smoothed d log(live) / d iteration

    # ------------------------------------------------------------ plan
    def plan_end(self, ramp: int, by: int) -> float:
        """Iteration at which the plan reaches the target."""
        return ramp + (1.0 - self.lead) * (by - ramp)

    def plan(self, it: int, ramp: int, by: int) -> float:
        """The planned cost at iteration ``it``."""
        end = self.plan_end(ramp, by)
        if it <= ramp:
            return self.initial
        if it >= end:
            return self.target
        frac = (it - ramp) / max(end - ramp, 1)
        return self.initial * (self.target / self.initial) ** frac

    def reached(self, cost: float) -> bool:
        return cost <= self.target

    def remaining(self, cost: float) -> float:
        """Cost that may still be removed (<= 0: none)."""
        return cost - self.target

    def gap(self, cost: float) -> float:
        """cost / target - 1 (logged as ``cost_gap``)."""
        return cost / self.target - 1.0

    # ------------------------------------------------------------ law
    def scale(self, it: int, ramp: int, by: int, live: float,
              cost: float) -> float:
        """The lambda multiplier at iteration ``it``; advances the state.

        Args:
            it: Iteration (0-based).
            ramp: Iterations of the lambda ramp (no adaptation during it).
            by: Iteration at which the target is due.
            live: Cost of the atoms above the shrink threshold.
            cost: The net's cost now.
        """
        if self.done or self.reached(cost):
            self.done = True
            return 0.0
        if it < ramp:
            self.last_iter = it
            return math.exp(self.log_scale)
        live = max(live, 1e-12)
        e = math.log(live / self.plan(it, ramp, by))
        dt = 1 if self.last_iter is None else max(0, it - self.last_iter)
        self.last_iter = it
        horizon = max(self.plan_end(ramp, by) - ramp, 1.0)
        if self.last_live is not None and dt:
            step = (math.log(live) - math.log(self.last_live)) / dt
            self.slope = 0.9 * self.slope + 0.1 * step
        self.last_live = live
        grow = self.ki * e * dt / horizon
        plan_slope = math.log(self.target / self.initial) / horizon
        if grow > 0 and self.slope <= plan_slope:
            grow = 0.0  # already falling as fast as planned: no windup
        self.log_scale = min(self.log_hi, max(self.log_lo,
                                              self.log_scale + grow))
        return math.exp(min(self.log_hi, max(
            self.log_lo, self.log_scale + self.kp * e)))

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return dict(log_scale=self.log_scale, last_iter=self.last_iter,
                    done=self.done, last_live=self.last_live,
                    slope=self.slope, target=self.target,
                    initial=self.initial)

    def load_state_dict(self, state: Mapping) -> None:
        if state.get('target') not in (None, self.target):
            raise BudgetError(
                f'penalty.target: the checkpoint was searched for a target '
                f'of {state["target"]:g}, this config asks for '
                f'{self.target:g}; resume with the same target')
        self.log_scale = float(state['log_scale'])
        self.last_iter = state['last_iter']
        self.done = bool(state['done'])
        self.last_live = state.get('last_live')
        self.slope = float(state.get('slope', 0.0))
