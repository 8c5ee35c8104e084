import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _run(tmp_path, digits_root, mode, port):
    out = tmp_path / 'result.json'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         f'--master_port={port}', osp.join(ROOT, 'tests', 'test_engine',
                                           '_ddp_worker.py'),
         str(out), str(tmp_path / 'work'), digits_root, mode],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_two_process_gloo_search_keeps_ranks_identical(tmp_path,
                                                       digits_root):
    result = _run(tmp_path, digits_root, 'check', 29613)
    assert result['wrapped'] == 'MMDistributedDataParallel'
    assert result['atoms'] < result['supernet_atoms']  # it shrank
    assert not result['diverged']
    # Compared right after every shrink, before DDP's constructor could
    # broadcast rank 0's tensors over a divergence.
    assert len(result['checks']) >= 2
    for check in result['checks']:
        assert set(check) == {'spec', 'params', 'optimizer', 'alpha_hat',
                              'ema'}
        assert all(check.values()), check
    log = open(next(osp.join(r, f) for r, _, fs in os.walk(tmp_path / 'work')
                    for f in fs if f.endswith('.log'))).read()
    assert 'AtomNAS shrink' in log


def test_two_process_budget_search_keeps_controller_identical(tmp_path,
                                                             digits_root):
    """With a MACs target and channel divisor 4: ranks stay identical after
    every shrink (spec, weights, optimizer, EMA, alpha_hat, controller) and
    end with the same controller state, at the target."""
    result = _run(tmp_path, digits_root, 'budget', 29615)
    assert not result['diverged'] and result['budget_done']
    assert result['checks'][-1] == dict(end=dict(
        spec=True, params=True, optimizer=True, alpha_hat=True, ema=True,
        budget=True))
    for check in result['checks'][:-1]:
        assert all(check.values()) and 'budget' in check, check
    assert all(n % 4 == 0 for b in result['spec']['blocks']
               for n in b['kernels'].values())


@pytest.mark.parametrize('mode', ['sabotage'])
def test_rank_divergent_surgery_is_seen(tmp_path, digits_root, mode):
    """The comparison can fail: a surgery that removes one more atom on one
    rank is caught at the first shrink."""
    result = _run(tmp_path, digits_root, mode, 29614)
    assert result['diverged']
    assert result['checks'] and not result['checks'][0]['spec']
