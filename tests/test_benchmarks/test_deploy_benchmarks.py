"""The smoke modes of benchmarks/bench_deploy.py and bench_gpu.py run (on
a tiny net), so that neither script rots."""
import importlib.util
import json
import os.path as osp
import re
import sys

import pytest
import torch

from tests.conftest import ROOT, TINY_SPEC

pytest.importorskip('onnxruntime')
pytest.importorskip('timm')


def _load(name):
    sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
    spec = importlib.util.spec_from_file_location(
        name, osp.join(ROOT, 'benchmarks', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_json(tmp_path):
    path = tmp_path / 'tiny.json'
    path.write_text(json.dumps(TINY_SPEC))
    return str(path)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_bench_deploy_quick(tiny_json, capsys, one_thread):
    bench = _load('bench_deploy')
    bench.main(['--quick', '--threads', '1', '--batches', '1',
                '--archs', tiny_json, '--layout-archs', tiny_json,
                '--timm', 'mobilenetv2_100'])
    out = capsys.readouterr().out
    # Every layout and padding of section 1, fused and unfused nets and the
    # timm net (BN-folded too) of section 2, in both runtimes.
    for name in ('fused sss /1', 'fused sss /8', 'fused mmm /8',
                 'mobilenetv2_100 +fold'):
        assert name in out
    assert 'torch b1' in out and 'ort b1' in out
    assert 'fused' in out and 'cost per MAC' in out
    diffs = [float(d) for d in re.findall(
        r'largest \|onnxruntime - torch\| / max\|torch\| (\S+)', out)]
    assert len(diffs) == 2 and max(diffs) < 1e-4
    assert 'load average at end' in out


def test_timm_bn_folding_is_exact():
    bench = _load('bench_deploy')
    torch.manual_seed(0)
    for name in ('mixnet_s', 'mobilenetv2_100'):
        m = bench.timm_model(name)
        bench.calibrate_bn(m, torch.randn(2, 3, 64, 64))
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            ref = m.eval()(x)
            folded = bench.fold_timm_bn(m)
            assert not any(isinstance(mm, torch.nn.BatchNorm2d)
                           for mm in folded.modules())
            out = folded(x)
        assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()


def test_bench_gpu_cpu_mode(tiny_json, capsys, one_thread):
    bench = _load('bench_gpu')
    bench.main(['--cpu', '--threads', '1', '--nets', tiny_json,
                'mobilenetv2_100'])
    out = capsys.readouterr().out
    assert 'images/s' in out and f'{tiny_json} fused' in out
    result = json.loads(next(line for line in out.splitlines()
                             if line.startswith('{')))
    assert result['dtype'] == 'bfloat16' and result['penalty_logged'] > 0
    assert result['atoms'][1] < result['atoms'][0]
    assert result['scaler_restored'] and all(
        a == b for a, b in result['scaler_restored'].values())
