"""The budget controller on a hand-driven simulation: pure Python, no model.

The plant: atoms with a utility ``u`` and a cost ``c``; the task gradient
on gamma is ``k (gamma - u)`` plus noise, the penalty's ``lambda * c /
mean(c) * sign(gamma)`` (the normalised L1 penalty), and the step is
TF-style RMSprop with momentum (the recipe's optimizer), which bounds how
fast a gamma can travel to the threshold: the plant has a dead time. An
atom is dead when |gamma| and its momentum average are below the threshold;
dead atoms are removed every few iterations, least important first, never
more than the budget allows (the hook's rules); at ``by`` what is left
above the target goes at once (the hook's forced removal).
"""
import math
import random

import pytest

from atomnas_mm.engine.search.budget import (BudgetController, BudgetError,
                                             parse_target)


class Plant:

    def __init__(self, seed=0, n=200, fixed=60.0):
        rng = self.rng = random.Random(seed)
        self.cost = [rng.choice([1.0, 2.0, 4.0]) for _ in range(n)]
        self.mean = sum(self.cost) / n
        self.util = [math.exp(rng.gauss(0, 1.2)) * 0.25 for _ in range(n)]
        self.gamma = [1.0] * n
        self.ahat = [1.0] * n
        self.sq = [0.0] * n   # RMSprop's square average
        self.mom = [0.0] * n  # and momentum
        self.alive = [True] * n
        self.fixed = fixed

    def total(self):
        return self.fixed + sum(c for c, a in zip(self.cost, self.alive) if a)

    def live(self, thr):
        return self.fixed + sum(c for c, a, g in zip(self.cost, self.alive,
                                                     self.gamma)
                                if a and abs(g) >= thr)

    def step(self, lam, lr=0.012, beta=0.9, k=0.01, eps=1e-3):
        for i, a in enumerate(self.alive):
            if not a:
                continue
            g = self.gamma[i]
            sign = (g > 0) - (g < 0)
            grad = k * (g - self.util[i]) + lam * self.cost[i] / self.mean \
                * sign + self.rng.gauss(0, 0.02)
            self.sq[i] = 0.9 * self.sq[i] + 0.1 * grad * grad
            self.mom[i] = 0.9 * self.mom[i] + lr * grad / math.sqrt(
                self.sq[i] + eps)
            self.gamma[i] = g - self.mom[i]
            self.ahat[i] = beta * self.ahat[i] + (1 - beta) * self.gamma[i]

    def remove(self, budget, thr, force=False):
        strength = {i: max(abs(self.gamma[i]), abs(self.ahat[i]))
                    for i, a in enumerate(self.alive) if a}
        cand = sorted((i for i in strength if force or strength[i] < thr),
                      key=strength.get)
        spent = 0.0
        for i in cand:
            if spent >= budget:
                break
            self.alive[i] = False
            spent += self.cost[i]


def run(weight, iters=300, ramp=30, by=150, thr=0.01, seed=0, state=None,
        stop_at=None):
    """Simulate a search; returns (plant, controller, history)."""
    plant = Plant(seed)
    c0 = plant.total()
    target = plant.fixed + 0.45 * (c0 - plant.fixed)
    ctl = BudgetController(target, c0)
    history = []
    for it in range(iters):
        if it == stop_at:
            return plant, ctl, history
        if state is not None and it == state[0]:
            plant, saved = state[1], state[2]
            ctl.load_state_dict(saved)
        lam = weight * min(1.0, it / ramp) * ctl.scale(
            it, ramp, by, plant.live(thr), plant.total())
        plant.step(lam)
        if (it + 1) % 5 == 0:
            plant.remove(plant.total() - target, thr)
        if it + 1 >= by and not ctl.reached(plant.total()):
            plant.remove(plant.total() - target, thr, force=True)
        history.append((it, lam, plant.total()))
    return plant, ctl, history


def equilibrium_lambda(seed=0, thr=0.01, k=0.01):
    """The lambda whose equilibrium (gamma = u - lambda c / (k mean)) leaves
    the target alive: what a user would have to find by sweeping."""
    plant = Plant(seed)
    target = plant.fixed + 0.45 * (plant.total() - plant.fixed)
    lo, hi = 0.0, 10.0
    for _ in range(40):
        mid = (lo + hi) / 2
        alive = plant.fixed + sum(
            c for c, u in zip(plant.cost, plant.util)
            if u - mid * c / (k * plant.mean) > thr)
        lo, hi = (mid, hi) if alive > target else (lo, mid)
    return hi


@pytest.mark.parametrize('factor', [0.1, 1.0, 10.0])
def test_reaches_and_holds_the_target(factor):
    """From a starting lambda 10x too small to 10x too large, the cost
    reaches the target by ``by`` mostly by the penalty's own removals
    (within 15% before the forced removal) without lambda running away (at
    most 30x the equilibrium lambda; the dead time asks for more than the
    equilibrium), ends within one atom below it, and lambda is 0 from then
    on."""
    lam_star = equilibrium_lambda()
    plant, ctl, history = run(factor * lam_star)
    target = ctl.target
    before_by = history[148][2]
    assert before_by / target - 1 < 0.15
    assert max(lam for _, lam, _ in history) < 30 * lam_star
    final = plant.total()
    assert target - 4.0 <= final <= target  # at most one atom (cost <= 4)
    reached = next(it for it, _, cost in history if cost <= target)
    assert reached <= 150
    assert all(lam == 0.0 for it, lam, _ in history if it > reached)
    assert all(cost == final for it, _, cost in history if it >= reached)


def test_state_survives_a_resume():
    lam = equilibrium_lambda()
    _, _, full = run(lam)
    plant, ctl, _ = run(lam, stop_at=100)
    saved = ctl.state_dict()
    assert saved['last_iter'] == 99 and saved['log_scale'] != 0.0
    # A new controller from the saved state, the plant as it was.
    _, _, resumed = run(lam, state=(100, plant, saved))
    assert [h[2] for h in resumed[100:]] == [h[2] for h in full[100:]]


def test_plan():
    ctl = BudgetController(100.0, 400.0, lead=0.2)
    assert ctl.plan(10, ramp=10, by=110) == 400.0
    assert ctl.plan_end(10, 110) == 90.0
    assert ctl.plan(50, 10, 110) == pytest.approx(200.0)  # half way in log
    assert ctl.plan(90, 10, 110) == 100.0 == ctl.plan(500, 10, 110)
    # During the ramp the multiplier is not adapted.
    assert ctl.scale(5, 10, 110, live=400.0, cost=400.0) == 1.0
    assert ctl.scale(11, 10, 110, live=1000.0, cost=400.0) > 1.0
    assert ctl.scale(12, 10, 110, live=100.0, cost=100.0) == 0.0
    assert ctl.done and ctl.scale(13, 10, 110, 1000.0, 1000.0) == 0.0


@pytest.mark.parametrize('target, match', [
    (dict(flops=3e8), "unknown measure 'flops'"),
    (dict(macs=-1), 'penalty.target.macs: must be a positive number'),
    (dict(macs=1, params=2), 'give one measure'),
    (360e6, 'give one measure'),
])
def test_bad_targets(target, match):
    with pytest.raises(BudgetError, match=match):
        parse_target(target)


def test_parse_and_bounds():
    assert parse_target(dict(latency=8)) == ('latency', 8.0)
    assert parse_target(None) is None
    with pytest.raises(BudgetError, match='below'):
        BudgetController(500.0, 400.0)
    with pytest.raises(BudgetError, match='lead'):
        BudgetController(100.0, 400.0, lead=1.0)
    ctl = BudgetController(100.0, 400.0)
    with pytest.raises(BudgetError, match='resume with the same target'):
        ctl.load_state_dict(dict(BudgetController(90.0, 400.0).state_dict()))
