import torch

from atomnas_mm.engine.search import ImportanceTracker, current_alpha
from atomnas_mm.models import AtomNASNet


def test_tracker_averages_follows_a_plan_and_round_trips(tiny_spec):
    net = AtomNASNet(tiny_spec)
    tracker = ImportanceTracker(0.5)
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
    # The net's keys and the tracker's agree after the same plan.
    net.keep_atoms(plan)
    assert set(current_alpha(net)) == set(tracker.alpha_hat)
