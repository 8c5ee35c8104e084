import json
import os
import os.path as osp
import subprocess
import sys

from tests.conftest import ROOT


def test_two_process_gloo_search_keeps_ranks_identical(tmp_path,
                                                       digits_root):
    out = tmp_path / 'result.json'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
         '--master_port=29613', osp.join(ROOT, 'tests', 'test_engine',
                                         '_ddp_worker.py'),
         str(out), str(tmp_path / 'work'), digits_root],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result['wrapped'] == 'MMDistributedDataParallel'
    assert result['atoms'] < result['supernet_atoms']  # it shrank
    assert result['identical']
    log = open(next(osp.join(r, f) for r, _, fs in os.walk(tmp_path / 'work')
                    for f in fs if f.endswith('.log'))).read()
    assert 'AtomNAS shrink' in log
