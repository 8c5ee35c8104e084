"""The authors' moving average of the weights (WarmupEMA)."""
import pytest
import torch
from torch import nn

from atomnas_mm.engine import WarmupEMA
from atomnas_mm.engine.search import warmup_decay


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3)).double()


def test_average_starts_at_the_weights_and_warms_up():
    """shadow_n = d_n * shadow_{n-1} + (1 - d_n) * w_n from the initial
    weights, d_n = min(decay, (1 + n) / (10 + n)); BN statistics averaged
    too, num_batches_tracked copied."""
    net = _net()
    ema = WarmupEMA(net, momentum=1e-4)
    ema.start_from(net)
    shadow = {k: v.clone() for k, v in net.state_dict().items()}
    for n in range(1, 6):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net.train()(torch.randn(4, 2, 3, 3, dtype=torch.float64))
        ema.update_parameters(net)
        d = warmup_decay(0.9999, n)
        for k, v in net.state_dict().items():
            if v.is_floating_point():
                shadow[k] = d * shadow[k] + (1 - d) * v
            else:
                shadow[k] = v.clone()
    got = ema.module.state_dict()
    for k, v in shadow.items():
        assert torch.allclose(got[k], v, rtol=0, atol=1e-14), k
    assert int(ema.steps) == 5
    assert got['1.num_batches_tracked'] == 5


def test_resumed_average_continues_the_warmup():
    net = _net()
    a = WarmupEMA(net, momentum=1e-4)
    a.start_from(net)
    for _ in range(3):
        a.update_parameters(net)
    b = WarmupEMA(net, momentum=1e-4)
    b.load_state_dict(a.state_dict())
    assert int(b.steps) == 3 and b.decay(int(b.steps) + 1) == \
        pytest.approx(5 / 14)


def test_without_warmup_it_is_mmengines_ema():
    from mmengine.model import ExponentialMovingAverage
    net = _net()
    ours = WarmupEMA(net, momentum=0.1, warmup=False, update_buffers=True)
    theirs = ExponentialMovingAverage(net, momentum=0.1, update_buffers=True)
    for _ in range(4):
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(0.9).add_(0.3)
        ours.update_parameters(net)
        theirs.update_parameters(net)
    for (k, v), w in zip(ours.module.state_dict().items(),
                         theirs.module.state_dict().values()):
        assert torch.allclose(v, w, atol=1e-12), k


def test_bad_momentum():
    with pytest.raises(ValueError, match='momentum'):
        WarmupEMA(_net(), momentum=0.0)
