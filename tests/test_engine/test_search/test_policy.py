"""The removal decision as pure functions: hand-made importance values and
costs, no model, no Runner."""
import pytest
import torch

from atomnas_mm.engine.search import block_relative, dead_masks, plan_removal
from atomnas_mm.models.arch import load_spec

SPEC = load_spec(dict(
    stem_channels=8, first_block=dict(out_channels=8),
    blocks=[
        dict(in_channels=8, out_channels=16, stride=2,
             kernels={'3': 8, '5': 8}),  # no residual
        dict(in_channels=16, out_channels=16, stride=1,
             kernels={'3': 16, '7': 8}),  # residual
    ]))
COST = {(0, 3): 10.0, (0, 5): 20.0, (1, 3): 5.0, (1, 7): 7.0}


def _strength(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {key: torch.rand(SPEC.blocks[key[0]].kernels[key[1]], generator=g)
            for key in COST}


def _dead(**dead_idx):
    masks = {key: torch.zeros(SPEC.blocks[key[0]].kernels[key[1]],
                              dtype=torch.bool) for key in COST}
    for name, idx in dead_idx.items():
        i, k = map(int, name[1:].split('_'))
        masks[(i, k)][idx] = True
    return masks


def test_dead_needs_both_alpha_and_alpha_hat_small():
    alpha = {(0, 3): torch.tensor([0.0, 0.5, 1e-4, -1e-4])}
    alpha_hat = {(0, 3): torch.tensor([0.5, 0.0, 1e-4, 1e-5])}
    assert dead_masks(alpha, alpha_hat, 1e-3)[(0, 3)].tolist() == \
        [False, False, True, True]


def test_non_finite_importance_is_refused():
    with pytest.raises(FloatingPointError, match='block 2 kernel 5'):
        dead_masks({(2, 5): torch.tensor([float('nan')])},
                   {(2, 5): torch.tensor([0.0])}, 1e-3)


def test_plain_removal_and_delta():
    dead = _dead(b1_3=[0, 5, 9])
    plan = plan_removal(SPEC, dead, _strength(), COST, delta=0)
    assert plan.atoms == 3 and plan.cost == 15.0
    assert plan.keep[1][3].tolist() == [i for i in range(16)
                                        if i not in (0, 5, 9)]
    assert plan.keep[1][7].tolist() == list(range(8))
    assert 0 not in plan.keep
    # Below delta: nothing.
    assert plan_removal(SPEC, dead, _strength(), COST, delta=16) is None
    assert plan_removal(SPEC, _dead(), _strength(), COST, delta=0) is None


def test_residual_block_may_lose_every_atom():
    dead = _dead(b1_3=list(range(16)), b1_7=list(range(8)))
    plan = plan_removal(SPEC, dead, _strength(), COST, delta=0)
    assert [len(v) for v in plan.keep[1].values()] == [0, 0]
    assert not plan.notes


def test_block_without_residual_keeps_its_strongest_atom():
    strength = _strength()
    strength[(0, 5)][6] = 9.0  # the strongest atom of block 0
    dead = _dead(b0_3=list(range(8)), b0_5=list(range(8)))
    plan = plan_removal(SPEC, dead, strength, COST, delta=0)
    assert plan.keep[0][3].tolist() == []
    assert plan.keep[0][5].tolist() == [6]
    assert plan.atoms == 15
    assert 'no residual' in plan.notes[0] and 'kernel 5' in plan.notes[0]


def test_divisor_rounds_up_with_the_strongest_of_the_dying():
    strength = _strength()
    dead = _dead(b1_3=[1, 2, 3, 4, 5])  # 11 left -> round up to 16? no: 16
    plan = plan_removal(SPEC, dead, strength, COST, delta=0, divisor=4)
    # 16 - 5 = 11 -> 12 kept: the strongest dying atom stays.
    kept = plan.keep[1][3].tolist()
    assert len(kept) == 12
    dying = torch.tensor([1, 2, 3, 4, 5])
    stays = int(dying[strength[(1, 3)][dying].argmax()])
    assert stays in kept and plan.atoms == 4
    # Every changed kernel holds 0 or a multiple of the divisor.
    dead = _dead(b1_3=list(range(15)), b1_7=[0, 1, 2])
    plan = plan_removal(SPEC, dead, strength, COST, delta=0, divisor=4)
    assert all(len(v) % 4 == 0 for v in plan.keep[1].values())


def test_divisor_with_the_keep_one_rule():
    dead = _dead(b0_3=list(range(8)), b0_5=list(range(8)))
    plan = plan_removal(SPEC, dead, _strength(), COST, delta=0, divisor=4)
    sizes = sorted(len(v) for v in plan.keep[0].values())
    assert sizes == [0, 4]


def test_budget_removes_least_important_first_and_stops_at_target():
    strength = _strength()
    dead = _dead(b1_3=list(range(16)))  # 16 x 5 = 80 dead cost
    plan = plan_removal(SPEC, dead, strength, COST, delta=0, budget=22)
    # 5 atoms (25) cross the budget by less than one atom; 4 would not.
    assert plan.atoms == 5 and plan.cost == 25
    removed = sorted(set(range(16)) - set(plan.keep[1][3].tolist()))
    weakest = strength[(1, 3)].argsort()[:5].sort().values.tolist()
    assert removed == weakest
    assert 'capped by the target' in plan.notes[-1]
    # Budget spent: nothing more goes.
    assert plan_removal(SPEC, dead, strength, COST, delta=0, budget=0) is None


def test_budget_with_divisor_takes_whole_groups():
    dead = _dead(b1_3=list(range(16)))
    plan = plan_removal(SPEC, dead, _strength(), COST, delta=0, divisor=4,
                        budget=22)
    assert plan.atoms == 8 and len(plan.keep[1][3]) == 8


def test_block_relative_ranking_spares_a_block_the_penalty_pulled_low():
    # Block 0 (costly) pulled low as a whole, block 1 high; each has a
    # spread of its own. Ranked against the whole net, block 0 goes first,
    # all of it; against its block's mean, both lose their weakest.
    strength = {(0, 3): torch.linspace(0.02, 0.06, 8),
                (0, 5): torch.linspace(0.03, 0.07, 8),
                (1, 3): torch.linspace(0.2, 1.0, 16),
                (1, 7): torch.linspace(0.3, 0.9, 8)}
    every = {key: torch.ones(len(v), dtype=torch.bool)
             for key, v in strength.items()}
    budget = 200.0  # about half the net's cost (10*8 + 20*8 + 5*16 + 7*8)
    flat = plan_removal(SPEC, every, strength, COST, 0.0, budget=budget)
    rel = plan_removal(SPEC, every, block_relative(strength), COST, 0.0,
                       budget=budget)
    assert sum(len(v) for v in flat.keep[0].values()) <= 2  # of 16
    assert 1 not in flat.keep  # block 1 untouched
    kept0 = sum(len(v) for v in rel.keep[0].values())
    kept1 = sum(len(v) for v in rel.keep[1].values())
    assert 4 <= kept0 < 16 and kept1 < 24
    # Within a block the order is unchanged: the weakest went.
    assert rel.keep[1][3].tolist() == list(range(16 - len(rel.keep[1][3]),
                                                 16))
    assert abs(rel.cost - budget) <= 20


def test_block_relative_values():
    strength = {(0, 3): torch.tensor([1.0, 3.0]),
                (0, 5): torch.tensor([-2.0, 2.0]),  # signs do not matter
                (1, 3): torch.zeros(3)}
    out = block_relative(strength)
    assert torch.allclose(out[(0, 3)], torch.tensor([0.5, 1.5]))
    assert torch.allclose(out[(0, 5)], torch.tensor([1.0, 1.0]))
    assert torch.equal(out[(1, 3)], torch.zeros(3))  # all 0 stays 0
    # Before and after: the input is not changed.
    assert strength[(0, 5)].tolist() == [-2.0, 2.0]
