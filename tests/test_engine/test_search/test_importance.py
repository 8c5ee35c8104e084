import pytest
import torch

from atomnas_mm.engine.search import (EMAImportance, ImportanceTracker,
                                      current_alpha, warmup_decay)
from atomnas_mm.models import AtomNASNet
from tests.conftest import TINY_SPEC as TINY


def test_tracker_averages_follows_a_plan_and_round_trips(tiny_spec):
    net = AtomNASNet(tiny_spec)
    tracker = ImportanceTracker(0.5, warmup=False)
    tracker.start(net)
    bn = net.blocks[1].importance_bns()[5]
    with torch.no_grad():
        bn.weight.fill_(3.0)
    tracker.update(net)  # 0.5 * 1 + 0.5 * 3
    assert torch.allclose(tracker.alpha_hat[(1, 5)], torch.full((16, ), 2.0))
    before = tracker.alpha_hat[(1, 5)].clone()
    before[4] = 7.0
    tracker.alpha_hat[(1, 5)] = before.clone()
    plan = {1: {3: torch.arange(16), 5: torch.tensor([4, 9]),
                7: torch.tensor([], dtype=torch.long)}}
    tracker.follow(plan)
    assert tracker.alpha_hat[(1, 5)].tolist() == [7.0, 2.0]
    assert (1, 7) not in tracker.alpha_hat
    other = ImportanceTracker(0.5)
    other.load_state_dict(tracker.state_dict())
    assert other.alpha_hat.keys() == tracker.alpha_hat.keys()
    assert other.updates == tracker.updates == 1
    # The net's keys and the tracker's agree after the same plan.
    net.keep_atoms(plan)
    assert set(current_alpha(net)) == set(tracker.alpha_hat)


def test_warmup_follows_the_gammas_early():
    """The authors' rule: decay min(beta, (1 + n) / (10 + n)) at the n-th
    update, so alpha_hat follows a gamma that fell to 0 within tens of
    steps even with beta 0.9999, where the fixed decay needs ~69k steps
    (ln 1000 / 1e-4) to fall below 1e-3."""
    net = AtomNASNet(TINY)
    warm, fixed = ImportanceTracker(0.9999), ImportanceTracker(
        0.9999, warmup=False)
    for t in (warm, fixed):
        t.start(net)
    with torch.no_grad():
        for b in net.blocks:
            for bn in b.importance_bns().values():
                bn.weight.zero_()
    expected = 1.0
    for n in range(1, 101):
        for t in (warm, fixed):
            t.update(net)
        expected *= warmup_decay(0.9999, n)
    assert warm.alpha_hat[(0, 3)][0].item() == pytest.approx(expected)
    assert warm.alpha_hat[(0, 3)].max() < 1e-3 < fixed.alpha_hat[(0, 3)].min()
    assert warmup_decay(0.9999, 1) == pytest.approx(2 / 11)
    assert warmup_decay(0.9999, 10 ** 6) == 0.9999


def test_ema_importance_reads_the_ema_copy(tiny_spec):
    ema_net = AtomNASNet(tiny_spec)
    with torch.no_grad():
        ema_net.blocks[2].branches['k5'].dw_bn.weight.fill_(0.25)
    imp = EMAImportance(lambda: ema_net)
    assert torch.equal(imp.alpha_hat[(2, 5)], torch.full((16, ), 0.25))
    assert imp.state_dict() == {}
