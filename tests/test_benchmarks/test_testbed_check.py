"""benchmarks/testbed_check.py: the verdicts it prints (a width step
counts only beyond 2 standard errors over 2+ seeds), the nets it trains
and the colour-only features. The training runs themselves are the
benchmark's (minutes each), not the suite's."""
import importlib.util
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config

from atomnas_mm.models.arch import count, load_spec
from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location(
    'testbed_check', osp.join(ROOT, 'benchmarks', 'testbed_check.py'))
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)


@pytest.fixture(scope='module')
def supernet():
    cfg = Config.fromfile(check.CONFIG)
    return load_spec(cfg.model.backbone.arch.to_dict()).to_dict()


@pytest.mark.parametrize('factor', [0.25, 0.5, 1.0])
def test_thinned_nets_keep_the_fraction_of_every_kernel(supernet, factor):
    thin = load_spec(check.thinned_spec(supernet, factor))
    full = load_spec(supernet)
    thin.check_subnet_of(full)
    for b, f in zip(thin.blocks, full.blocks):
        assert b.kernels == {k: int(n * factor) for k, n in f.kernels.items()}
    if factor < 1:
        assert count(thin, 32, 32).macs < count(full, 32, 32).macs


def _rows(factor, tops):
    return [dict(factor=factor, seed=i, top1=t, macs=1, params=1,
                 seconds=1.0) for i, t in enumerate(tops)]


def test_step_verdict_needs_two_standard_errors_and_two_seeds():
    clear = check.summarize(_rows(0.25, [40, 41, 42, 40, 41])
                            + _rows(0.5, [50, 51, 49, 50, 52]))
    (step, ) = check.steps(clear)
    assert step['beyond_2se'] and step['diff'] == pytest.approx(9.6)
    noisy = check.summarize(_rows(0.25, [30, 50, 40, 45, 35])
                            + _rows(0.5, [44, 40, 52, 38, 46]))
    (step, ) = check.steps(noisy)
    assert 0 < step['diff'] < 2 * step['se'] and not step['beyond_2se']
    one = check.summarize(_rows(0.25, [40]) + _rows(0.5, [60]))
    (step, ) = check.steps(one)
    assert not step['beyond_2se'] and not step['seeds_known']
    md = check.table(one, check.steps(one), None, 1)
    assert '1 seed: unknown' in md and 'OUTSIDE the intended' in md


def test_colour_features_ignore_arrangement():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    shuffled = img.reshape(1, -1, 3)[:, rng.permutation(32 * 32)].reshape(
        img.shape)
    a, b = check.colour_features(np.concatenate([img, shuffled]))
    assert a.shape == (72, )
    # Histogram and per-channel statistics do not see where pixels are.
    np.testing.assert_allclose(a[:70], b[:70], rtol=1e-5, atol=1e-6)
