"""atomnas_mm.utils.timing, which every benchmark and the latency tool time
with."""
import argparse

import pytest
import torch
from torch import nn

from atomnas_mm.utils import timing
from atomnas_mm.utils.timing import (Timer, add_common_args, calibrate_bn,
                                     paired_ratio, run_sections, spread,
                                     time_round_robin)


def test_warm_calls_run_each_candidate_right_before_its_timed_call():
    log = []
    cands = {n: (lambda n=n: log.append(n)) for n in 'abc'}
    times = time_round_robin(cands, reps=2, warmup=1)
    assert log == list('abc') + list('abc') + list('bca')
    assert {n: len(t) for n, t in times.items()} == dict(a=2, b=2, c=2)
    log.clear()
    time_round_robin(cands, reps=2, warmup=0, warm_calls=1)
    # Every timed call follows an untimed one of the same candidate.
    assert log == list('aabbcc') + list('bbccaa')


def test_paired_ratio_pairs_rounds():
    # Same-round ratios 0.5, 2, 3: median 2 (the ratio of the medians,
    # 3 / 2, would let a slow round of one side count alone).
    times = dict(a=[1.0, 10.0, 3.0], b=[2.0, 5.0, 1.0])
    assert paired_ratio(times, 'a', 'b') == 2.0
    assert spread([1.0, 2.0, 3.0]) == 100.0


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))


def test_calibrate_bn_sets_one_batchs_statistics():
    net = _net()
    x = torch.randn(8, 3, 6, 6) * 5 + 2
    calibrate_bn(net, x)
    bn = net[1]
    with torch.no_grad():
        y = net[0](x)
    assert torch.allclose(bn.running_mean, y.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, y.var((0, 2, 3)), rtol=1e-4)
    assert bn.momentum == 0.1 and not net.training
    with torch.no_grad():  # eval output normalised like the batch
        out = net(x)
    assert out.mean().abs() < 0.1 and (out.std() - 1).abs() < 0.1


def test_timer_prepares_and_picks(monkeypatch):
    with pytest.raises(ValueError, match='median or min'):
        Timer(statistic='mean')
    timer = Timer(batch=2, memory_format='channels_last', reps=3, warmup=0)
    x = timer.input(3, (6, 6))
    assert x.shape == (2, 3, 6, 6) and torch.equal(x, timer.input(3, (6, 6)))
    net = _net()
    fwd = timer.prepare(net, x)
    fwd()
    assert not net.training
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    fixed = {'a': [3.0, 1.0, 2.0]}
    monkeypatch.setattr(timing, 'time_round_robin',
                        lambda cands, reps, warmup, warm_calls: fixed)
    assert timer.medians({'a': fwd}) == {'a': 2.0}
    timer.statistic = 'min'
    assert timer.medians({'a': fwd}) == {'a': 1.0}


def test_sections_run_in_order_with_the_conditions_printed(capsys):
    ran = []
    sections = {'one': lambda a: ran.append('one'),
                'two': lambda a: ran.append('two')}
    p = argparse.ArgumentParser()
    add_common_args(p, sections, reps=5, quick='smoke')
    threads = torch.get_num_threads()
    args = p.parse_args(['--sections', 'two', 'one', '--threads',
                         str(threads)])
    assert args.reps == 5 and args.warmup == 1 and not args.quick
    run_sections(args, sections)
    assert ran == ['two', 'one']
    out = capsys.readouterr().out
    assert f'{threads} threads, reps 5' in out
    assert 'load average at start' in out and 'load average at end' in out
