"""The memory benchmark runs (a tiny setting), so that it cannot rot."""
import importlib.util
import os.path as osp

from tests.conftest import ROOT


def test_bench_memory_quick(capsys):
    spec = importlib.util.spec_from_file_location(
        'bench_memory', osp.join(ROOT, 'benchmarks', 'bench_memory.py'))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    summary = bench.main(['--quick', '--arch', 'atomnas_a', '--threads', '1'])
    out = capsys.readouterr().out
    assert 'with_cp / plain' in out and 'activations per image' in out
    assert summary['mb_per_image'] > 0 and summary['time_ratio'] > 0
