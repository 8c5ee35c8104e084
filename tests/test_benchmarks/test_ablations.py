"""benchmarks/ablations.py: its baselines hit their targets, and --quick
runs the whole study end to end (the figures mean little in 6 epochs)."""
import importlib.util
import json
import os.path as osp

import pytest
import torch

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location(
    'ablations', osp.join(ROOT, 'benchmarks', 'ablations.py'))
ablations = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ablations)


@pytest.fixture(scope='module')
def supernet():
    from mmengine.config import Config
    return ablations.load_spec(Config.fromfile(
        ablations.DEMO_CONFIG).model.backbone.arch.to_dict())


@pytest.mark.parametrize('target', [0.6e6, 1.0e6, 1.8e6])
def test_uniform_is_the_widest_uniform_net_within_the_target(supernet,
                                                             target):
    spec = ablations.uniform_spec(supernet, target)
    assert ablations.macs(spec) <= target
    # One fraction for every kernel (up to rounding down).
    fractions = {round(spec.blocks[i].kernels.get(k, 0) / n, 1)
                 for i, b in enumerate(supernet.blocks)
                 for k, n in b.kernels.items() if n >= 40}
    assert len(fractions) == 1
    # Thinned a little less it would exceed the target.
    grown = ablations.uniform_spec(supernet, 1.15 * target)
    assert ablations.macs(grown) > ablations.macs(spec)


@pytest.mark.parametrize('seed', [0, 1])
def test_random_removal_hits_the_target_and_depends_on_the_seed(supernet,
                                                                seed):
    spec = ablations.random_spec(supernet, 1.0e6, seed)
    other = ablations.random_spec(supernet, 1.0e6, seed + 2)
    assert 0.98e6 <= ablations.macs(spec) <= 1.0e6
    assert spec.to_dict() != other.to_dict()
    again = ablations.random_spec(supernet, 1.0e6, seed)
    assert spec.to_dict() == again.to_dict()


def test_versus_says_whether_a_difference_exceeds_seed_noise():
    ref = dict(n=3, top1=(80.0, 1.0))
    assert 'beyond' in ablations.versus(dict(n=3, top1=(84.0, 1.0)), ref)
    assert 'within' in ablations.versus(dict(n=3, top1=(81.0, 1.0)), ref)
    assert 'unknown' in ablations.versus(dict(n=1, top1=(90.0, 0.0)), ref)


def test_quick_study(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        summary = ablations.main(['--quick', '--work-dir', str(tmp_path),
                                  '--threads', str(threads)])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    target = 1.0e6
    for method in ablations.METHODS:
        assert f'seed 0 {method}' in out
        assert (target, method) in summary
    rows = json.load(open(tmp_path / 'results.json'))
    assert {r['method'] for r in rows} == set(ablations.METHODS)
    for r in rows:
        assert 0 <= r['top1'] <= 100
        # Every method lands at the target (the searches within the
        # divisor-free granularity of one atom).
        assert 0.95 * target <= r['macs'] <= target, r['method']
        assert ('top1_no_recal' in r) == (r['method'] in ('flops', 'equal'))
    searched = next(r for r in rows if r['method'] == 'flops')
    retrained = next(r for r in rows if r['method'] == 'retrain')
    assert retrained['spec'] == searched['spec']
    md = (tmp_path / 'table.md').read_text()
    assert md.count('\n') == 2 + len(ablations.METHODS)
    for name in ('pareto.png', 'removed.png'):
        with open(tmp_path / name, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
