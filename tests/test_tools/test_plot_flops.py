"""tools/analysis_tools/plot_flops.py: MACs against iteration (Fig. 2)."""
import glob
import json
import os
import os.path as osp
import sys

import pytest

from tests.conftest import ROOT
from tests.test_tools.test_export_arch import tiny_search
from tests.test_tools.test_visualize_arch import check_png

sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis_tools'))
import plot_flops  # noqa: E402


@pytest.fixture(scope='module')
def search_dir(tmp_path_factory, digits_root):
    return tiny_search(tmp_path_factory, digits_root)


def _records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_search_work_dir(search_dir, capsys):
    out = plot_flops.main([search_dir])
    assert out == osp.join(search_dir, 'macs_curve.png')
    check_png(out)
    printed = capsys.readouterr().out
    scalars, = glob.glob(osp.join(search_dir, '*', 'vis_data',
                                  'scalars.json'))
    train = [r for r in _records(scalars) if 'macs' in r]
    assert len(train) == 8  # 128 images, batch 32, 2 epochs
    first, last = train[0]['macs'], train[-1]['macs']
    assert last < first  # the search shrank the net
    assert f'{first / 1e6:.4f}M at iter 1' in printed
    assert f'{last / 1e6:.4f}M at iter 8' in printed
    assert out in printed and scalars in printed

    macs, val = plot_flops.read_scalars(scalars)
    assert macs == [(r['iter'], r['macs']) for r in train]
    # Validation after epoch 2 sits at that epoch's last iteration.
    assert len(val) == 1 and val[0][0] == 8


def test_scalars_file_and_out(search_dir, tmp_path):
    scalars, = glob.glob(osp.join(search_dir, '*', 'vis_data',
                                  'scalars.json'))
    out = plot_flops.main([scalars, '--out', str(tmp_path / 'f' / 'm.png')])
    assert out == str(tmp_path / 'f' / 'm.png')
    check_png(out)


def _write(path, records):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write('\n'.join(json.dumps(r) for r in records) + '\n')


def test_newest_run_and_iter_based_val(tmp_path, capsys):
    old = str(tmp_path / '20240101_000000' / 'vis_data' / 'scalars.json')
    new = str(tmp_path / '20240102_000000' / 'vis_data' / 'scalars.json')
    _write(old, [dict(macs=9e6, iter=1, step=1)])
    # Iteration-based: no "epoch", validation "step" is the iteration; a
    # torn last line (a killed run) is skipped.
    _write(new, [dict(macs=4e6, iter=1, step=1), dict(macs=2e6, iter=50,
                                                      step=50),
                 {'accuracy/top1': 61.0, 'step': 40}])
    with open(new, 'a') as f:
        f.write('{"macs": 1')
    os.utime(old, (1, 1))
    out = plot_flops.main([str(tmp_path)])
    check_png(out)
    printed = capsys.readouterr().out
    assert new in printed and '4.0000M at iter 1 -> 2.0000M at iter 50' \
        in printed
    assert plot_flops.read_scalars(new)[1] == [(40, 61.0)]


def test_no_macs_is_one_line_error(tmp_path):
    path = str(tmp_path / 'run' / 'vis_data' / 'scalars.json')
    _write(path, [{'accuracy/top1': 50.0, 'step': 1}])
    with pytest.raises(SystemExit) as e:
        plot_flops.main([str(tmp_path)])
    assert 'no scalars with "macs"' in str(e.value)
    assert '\n' not in str(e.value)
    with pytest.raises(SystemExit, match='no \\*/vis_data/scalars.json'):
        plot_flops.main([str(tmp_path / 'run')])


def test_budget_target_and_plan(tmp_path, capsys):
    # A MACs target: drawn on the MACs axis.
    path = str(tmp_path / 'a' / '20240101_000000' / 'vis_data' /
               'scalars.json')
    _write(path, [dict(macs=3e6, iter=1, cost_target=1e6, cost_gap=2.0,
                       cost_plan=3e6),
                  dict(macs=0.99e6, iter=9, cost_target=1e6, cost_gap=-0.01,
                       cost_plan=1e6)])
    out = plot_flops.main([str(tmp_path / 'a')])
    check_png(out)
    assert plot_flops.read_budget(path)['cost_target'] == [(1, 1e6),
                                                          (9, 1e6)]
    assert 'target: 1e+06 MACs; final 990000 (-1.00%)' in \
        capsys.readouterr().out
    # A latency target: its own panel, unit from budget.json.
    path = str(tmp_path / 'b' / '20240101_000000' / 'vis_data' /
               'scalars.json')
    _write(path, [dict(macs=3e6, iter=1, cost=9.0, cost_target=5.0,
                       cost_plan=9.0),
                  dict(macs=1e6, iter=9, cost=4.9, cost_target=5.0,
                       cost_plan=5.0)])
    with open(tmp_path / 'b' / 'budget.json', 'w') as f:
        json.dump(dict(unit='ms'), f)
    check_png(plot_flops.main([str(tmp_path / 'b')]))
    assert 'target: 5 ms; final 4.9 (-2.00%)' in capsys.readouterr().out
