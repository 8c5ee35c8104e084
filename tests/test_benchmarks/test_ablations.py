"""benchmarks/ablations.py: its baselines hit their targets, and --quick
runs the whole study end to end on the digits demo (fast; the figures
mean nothing in 2 epochs)."""
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
DEMO = osp.join(ROOT, 'configs', 'atomnas', 'atomnas_demo_digits.py')


@pytest.fixture(scope='module')
def study():
    return ablations.Study(DEMO)


@pytest.mark.parametrize('target', [0.6e6, 1.0e6, 1.8e6])
def test_uniform_is_the_widest_uniform_net_within_the_target(study, target):
    spec = ablations.uniform_spec(study, target)
    assert study.macs(spec) <= target
    # One fraction for every kernel (up to rounding down).
    fractions = {round(spec.blocks[i].kernels.get(k, 0) / n, 1)
                 for i, b in enumerate(study.supernet.blocks)
                 for k, n in b.kernels.items() if n >= 40}
    assert len(fractions) == 1
    # Thinned a little less it would exceed the target.
    grown = ablations.uniform_spec(study, 1.15 * target)
    assert study.macs(grown) > study.macs(spec)


@pytest.mark.parametrize('target', [0.6e6, 1.0e6])
def test_mbv2_has_one_3x3_kernel_per_block_and_fills_the_target(study,
                                                                target):
    spec = ablations.mbv2_spec(study, target)
    assert all(set(b.kernels) == {3} for b in spec.blocks)
    assert 0.95 * target <= study.macs(spec) <= target


@pytest.mark.parametrize('seed', [0, 1])
def test_random_removal_hits_the_target_and_depends_on_the_seed(study, seed):
    spec = ablations.random_spec(study, 1.0e6, seed)
    other = ablations.random_spec(study, 1.0e6, seed + 2)
    assert 0.98e6 <= study.macs(spec) <= 1.0e6
    assert spec.to_dict() != other.to_dict()
    assert spec.to_dict() == ablations.random_spec(study, 1.0e6,
                                                   seed).to_dict()


def _rows(flops, other):
    return [dict(target=1.0, seed=s, method=m, top1=t, macs=1.0)
            for s, (a, b) in enumerate(zip(flops, other))
            for m, t in (('flops', a), ('uniform', b))]


def test_paired_difference_and_its_standard_error():
    s = ablations.summarize(_rows([80, 82, 81], [83, 86, 83]))[
        (1.0, 'uniform')]
    mean, se, n = s['paired']
    assert (mean, n) == (3.0, 3) and se == pytest.approx(1 / 3 ** 0.5)
    assert 'beyond 2 SE' in ablations.versus(s)
    s = ablations.summarize(_rows([80, 82, 81], [83, 81, 83]))[
        (1.0, 'uniform')]
    assert 'within 2 SE' in ablations.versus(s)


def test_quick_study(tmp_path, capsys, digits_root):
    threads = torch.get_num_threads()
    try:
        summary = ablations.main([
            '--quick', '--config', DEMO, '--work-dir', str(tmp_path),
            '--data-root', digits_root,
            '--threads', str(threads), '--epochs', '3', '--subset', '256',
            '--targets', '1.0e6'])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    target = 1.0e6
    for method in ablations.METHODS:
        assert f'seed 1 {method}' in out
        assert (target, method) in summary
    rows = json.load(open(tmp_path / 'results.json'))
    assert {r['method'] for r in rows} == set(ablations.METHODS) | {
        'calibrate'}
    for r in rows:
        assert 0 <= r['top1'] <= 100
        # The targeted methods land at the target.
        if r['method'] not in ('flops', 'retrain', 'calibrate'):
            assert 0.9 * target <= r['macs'] <= target, r['method']
        assert ('top1_no_recal' in r) == (r['method'] in ablations.SEARCHED
                                          or r['method'] == 'calibrate')
    # flops at seed 0 is the calibration run at the chosen lambda, reused.
    cal = next(r for r in rows if r['method'] == 'calibrate')
    flops0 = next(r for r in rows if r['method'] == 'flops'
                  and r['seed'] == 0)
    assert flops0['lam'] == cal['lam'] and flops0['spec'] == cal['spec']
    assert flops0['top1'] == cal['top1']
    searched = next(r for r in rows if r['method'] == 'flops')
    retrained = next(r for r in rows if r['method'] == 'retrain')
    assert retrained['spec'] == searched['spec']
    assert 'paired' in summary[(target, 'uniform')]
    md = (tmp_path / 'table.md').read_text()
    assert md.count('\n') == 2 + len(ablations.METHODS)
    for name in ('pareto.png', 'removed.png'):
        with open(tmp_path / name, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_removed_picture_with_a_method_missing_at_one_target(study,
                                                             tmp_path):
    """Targets run at different times (--resume): a method present at one
    target only still draws (the study crashed here once)."""
    sup = study.supernet.to_dict()
    half = ablations.uniform_spec(study, 1.0e6).to_dict()
    rows = [dict(method='flops', target=t, seed=0, spec=half, top1=90.0,
                 macs=1.0e6) for t in (1.0e6, 0.6e6)]
    rows.append(dict(method='budget', target=1.0e6, seed=0, spec=sup,
                     top1=90.0, macs=1.0e6))
    path = str(tmp_path / 'removed.png')
    ablations.draw_removed(rows, study, path)
    assert osp.getsize(path) > 1000
