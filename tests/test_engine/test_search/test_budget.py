"""The budget's plan, by hand: pure Python, no model."""
import pytest

from atomnas_mm.engine.search.budget import (BudgetError, BudgetPlan,
                                             parse_target)


def test_linear_plan():
    plan = BudgetPlan(100.0, 400.0, lead=0.2)
    assert plan.plan_end(10, 110) == 90.0
    assert plan.plan(10, start=10, by=110) == 400.0  # through the ramp
    assert plan.plan(50, 10, 110) == pytest.approx(250.0)  # half way
    assert plan.plan(90, 10, 110) == 100.0 == plan.plan(500, 10, 110)
    # Never rising, and bounded steps: the descent is spread evenly.
    costs = [plan.plan(t, 10, 110) for t in range(0, 120)]
    assert costs == sorted(costs, reverse=True)
    assert max(a - b for a, b in zip(costs, costs[1:])) == pytest.approx(
        300.0 / 80)


def test_cubic_plan_removes_more_early():
    lin = BudgetPlan(100.0, 400.0, lead=0.0)
    cub = BudgetPlan(100.0, 400.0, lead=0.0, shape='cubic')
    assert cub.plan(25, 0, 100) < lin.plan(25, 0, 100)
    assert cub.plan(50, 0, 100) == pytest.approx(100 + 300 / 8)
    assert cub.plan(100, 0, 100) == 100.0


def test_bookkeeping_and_summary():
    plan = BudgetPlan(100.0, 400.0)
    assert plan.summary() == 'nothing removed'
    plan.record(step=20, cost=300.0, removed=100.0)
    assert not plan.done
    plan.record(step=30, cost=100.0, removed=200.0, ranked=True,
                strongest=0.25)
    assert plan.done and plan.reached_step == 30
    assert plan.summary() == ('target reached at step 30: 33% of the '
                              'removed cost by dead atoms, 67% by rank '
                              '(largest importance removed 0.25)')
    plan.record(step=40, cost=90.0)  # reached once
    assert plan.reached_step == 30
    only_dead = BudgetPlan(100.0, 400.0)
    only_dead.record(step=5, cost=100.0, removed=300.0)
    assert only_dead.summary() == 'target reached at step 5: by dead atoms'


def test_state_round_trip_and_another_target_is_refused():
    plan = BudgetPlan(100.0, 400.0)
    plan.record(step=7, cost=250.0, removed=150.0, ranked=True,
                strongest=0.5)
    again = BudgetPlan(100.0, 400.0)
    again.load_state_dict(plan.state_dict())
    assert again.state_dict() == plan.state_dict()
    with pytest.raises(BudgetError, match='resume with the same target'):
        BudgetPlan(90.0, 400.0).load_state_dict(plan.state_dict())


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
        BudgetPlan(500.0, 400.0)
    with pytest.raises(BudgetError, match='lead'):
        BudgetPlan(100.0, 400.0, lead=1.0)
    with pytest.raises(BudgetError, match='shape'):
        BudgetPlan(100.0, 400.0, shape='log')
    with pytest.raises(BudgetError, match=r"penalty.plan.rank: one of "
                       r"\('block', 'global'\), got 'net'"):
        BudgetPlan(100.0, 400.0, rank='net')
    assert BudgetPlan(100.0, 400.0).rank == 'block'


def test_defaults_of_a_budget():
    """What the budget guide promises: the target is due by 3/4 of
    training and ranked removal is measured against the block."""
    from atomnas_mm.engine.search import parse_penalty
    cfg = parse_penalty(dict(weight=1e-4, target=dict(macs=1e6)))
    assert cfg['target_by'] == 0.75
    assert BudgetPlan(1e6, 4e6, **dict(cfg['plan'] or {})).rank == 'block'
    with pytest.raises(BudgetError, match=r"penalty.plan: unknown option "
                       r"'order'"):
        parse_penalty(dict(weight=1e-4, target=dict(macs=1e6),
                           plan=dict(order='block')))


def test_the_old_controller_option_is_refused_in_one_line():
    from atomnas_mm.engine.search import parse_penalty
    with pytest.raises(BudgetError, match='penalty.controller: a budget no '
                       'longer scales lambda') as e:
        parse_penalty(dict(weight=1e-4, target=dict(macs=1e6),
                           controller=dict(scale_range=(1e-2, 10))))
    assert '\n' not in str(e.value)
