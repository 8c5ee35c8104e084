"""EpochStepLR decays exactly where TF's "x0.97 every 2.4 epochs" does,
rounded to whole iterations; mmengine's StepLR with the same settings
never decays (the reason it exists)."""
import pytest
import torch
from mmengine.optim.scheduler import StepLR

from atomnas_mm.engine import EpochStepLR


def _lrs(cls, epoch_length, iters, **kwargs):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = cls.build_iter_from_epoch(opt, epoch_length=epoch_length,
                                      **kwargs)
    lrs = []
    for _ in range(iters):
        lrs.append(opt.param_groups[0]['lr'])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize('epoch_length', [10, 7, 625])
def test_decay_points(epoch_length):
    kw = dict(step_size=2.4, gamma=0.97, by_epoch=True, begin=0, end=100)
    iters = int(10 * epoch_length)
    lrs = _lrs(EpochStepLR, epoch_length, iters, **kw)
    step = round(2.4 * epoch_length)
    drops = [i for i in range(1, iters) if lrs[i] < lrs[i - 1]]
    assert drops == list(range(step, iters, step))
    assert lrs[-1] == pytest.approx(0.97 ** len(drops))
    # Over 10 epochs TF decays 4 times (at 2.4, 4.8, 7.2, 9.6 epochs).
    assert len(drops) == 4
    if 2.4 * epoch_length != int(2.4 * epoch_length):
        # mmengine's StepLR: a fractional step size never fires.
        assert set(_lrs(StepLR, epoch_length, iters, **kw)) == {1.0}


def test_begin_is_converted_and_bad_arguments_refused():
    lrs = _lrs(EpochStepLR, 10, 60, step_size=2.4, gamma=0.5, by_epoch=True,
               begin=1, end=100)
    # 10 iterations of warm-up epoch, then every 24.
    assert [i for i in range(1, 60) if lrs[i] < lrs[i - 1]] == [34, 58]
    with pytest.raises(ValueError, match='by_epoch'):
        _lrs(EpochStepLR, 10, 1, step_size=2.4, by_epoch=False)
    with pytest.raises(ValueError, match='epoch_length'):
        _lrs(EpochStepLR, 0, 1, step_size=2.4)
