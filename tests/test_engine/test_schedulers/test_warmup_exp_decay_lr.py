import math

import pytest
import torch

from atomnas_mm.engine import WarmupExpDecayLR


def _lrs(steps, **kwargs):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.128)
    sched = WarmupExpDecayLR.build_iter_from_epoch(
        opt, epoch_length=10, **kwargs)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]['lr'])
        opt.step()
        sched.step()
    return out


def test_the_authors_schedule_step_by_step():
    """Warm-up from 0.016 (the rate of 256 images) to 0.128 over 5 epochs,
    then x0.97 every 2.4 epochs counted from step 0: the decay points fall
    on ceil(24 k), and right after the warm-up the rate is 0.97 ** 2."""
    lrs = _lrs(200, warmup=5, start_factor=0.125, decay_every=2.4,
               gamma=0.97)
    for i, lr in enumerate(lrs):
        if i <= 50:
            want = 0.128 * (0.125 + i / 50 * 0.875)
        else:
            want = 0.128 * 0.97 ** math.floor(i / 24)
        assert lr == pytest.approx(want, rel=1e-12), i
    assert lrs[0] == pytest.approx(0.016) and lrs[50] == pytest.approx(0.128)
    assert lrs[51] == pytest.approx(0.128 * 0.97 ** 2)
    drops = [i for i in range(52, 200) if lrs[i] < lrs[i - 1]]
    assert drops == [72, 96, 120, 144, 168, 192]


def test_fractional_periods_and_smooth_decay():
    lrs = _lrs(40, decay_every=0.25, gamma=0.5)  # 2.5 iterations per period
    drops = [i for i in range(1, 40) if lrs[i] < lrs[i - 1]]
    assert drops[:4] == [3, 5, 8, 10]  # ceil(2.5 k)
    smooth = _lrs(5, decay_every=1.0, gamma=0.5, staircase=False)
    assert smooth[3] == pytest.approx(0.128 * 0.5 ** 0.3)
    floor = _lrs(100, decay_every=0.1, gamma=0.5, min_factor=0.05)
    assert min(floor) == pytest.approx(0.128 * 0.05)


@pytest.mark.parametrize('kwargs', [dict(decay_every=0), dict(gamma=1.5),
                                    dict(start_factor=0)])
def test_bad_arguments(kwargs):
    p = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match='WarmupExpDecayLR'):
        WarmupExpDecayLR(torch.optim.SGD([p], lr=0.1), **kwargs)
