"""benchmarks/bench_budget.py --quick: every section but 'speed' (whose
timing table 'proxy' shares) runs end to end on tiny nets and 2-epoch demos
of 128 images (the numbers mean nothing)."""
import os.path as osp
import sys

from tests.conftest import ROOT

sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import bench_budget  # noqa: E402


def test_quick(capsys, tmp_path):
    bench_budget.main(['--quick', '--threads', '1', '--work-dir',
                       str(tmp_path), '--sections', 'collapse', 'seeds',
                       'lut', 'proxy'])
    out = capsys.readouterr().out
    assert 'as shipped' in out and 'fixed lambda (the plain demo)' in out
    assert '1.40M' in out and 'fixed lambdas: 0.002:' in out
    assert (tmp_path / 'results.json').is_file()
    assert 'random sub-nets: median |error|' in out
    assert 'divisor 8:' in out and 'divisible by 8: True' in out
    assert 'ort b1: divisor-1 net time / divisor-8 net time' in out
