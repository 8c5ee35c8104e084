"""With the light set-up (mmcv-lite, no mmdet) a detection config ends in
one line that says how to get the full set-up, from every tool.

The test environment has the full set-up; the light one is simulated in the
tools' processes by a sitecustomize that makes ``mmdet`` and/or
``mmcv._ext`` fail to import (and, for the quick check of the dist scripts,
be not found).
"""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from atomnas_mm.utils import stack
from tests.conftest import ROOT

LINE = f'error: {stack.FULL_SETUP_NEEDED}'
SHAPES = 'configs/mask_rcnn_atomnas/mask_rcnn_atomnas_demo_shapes.py'

BLOCKER = '''
import sys
BLOCKED = {blocked!r}
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name in BLOCKED or name.split('.')[0] in BLOCKED:
            raise ModuleNotFoundError(f'No module named {{name!r}}', name=name)
sys.meta_path.insert(0, _Absent())
'''


def _run(tmp_path, blocked, *cmd):
    site = tmp_path / 'site'
    site.mkdir(exist_ok=True)
    (site / 'sitecustomize.py').write_text(BLOCKER.format(blocked=blocked))
    env = dict(os.environ, PYTHONPATH=f'{site}{os.pathsep}{ROOT}',
               PYTHON=sys.executable)
    return subprocess.run(list(cmd), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def _says_only_the_line(proc):
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == LINE, proc.stderr[-3000:]


def test_the_line_names_the_command():
    assert LINE == ("error: this config needs mmdet and mmcv's compiled ops, "
                    'which the light set-up (make demo) does not install: '
                    'run `make setup`')


def test_train_without_compiled_ops(tmp_path):
    """mmdet installed beside mmcv-lite: mmdet.models fails on mmcv._ext."""
    proc = _run(tmp_path, ['mmcv._ext'], sys.executable, 'tools/train.py',
                SHAPES, '--work-dir', str(tmp_path / 'w'))
    _says_only_the_line(proc)
    assert proc.stderr.count('error:') == 1


def test_test_without_mmdet(tmp_path):
    ckpt = str(tmp_path / 'weights.pth')
    torch.save({'state_dict': {'w': torch.zeros(1)}}, ckpt)
    proc = _run(tmp_path, ['mmdet', 'mmcv._ext'], sys.executable,
                'tools/test.py', SHAPES, ckpt, '--work-dir',
                str(tmp_path / 'w'))
    _says_only_the_line(proc)


def test_custom_imports_of_mmdet_without_mmdet(tmp_path):
    cfg = tmp_path / 'needs_mmdet.py'
    base = osp.join(ROOT, 'configs', 'atomnas', 'atomnas_demo_digits.py')
    cfg.write_text(
        f"_base_ = [{base!r}]\n"
        "custom_imports = dict(imports=['atomnas_mm', 'mmdet.models'],\n"
        "                      allow_failed_imports=False)\n")
    proc = _run(tmp_path, ['mmdet', 'mmcv._ext'], sys.executable,
                'tools/train.py', str(cfg), '--work-dir', str(tmp_path / 'w'))
    _says_only_the_line(proc)


def test_dist_train_says_it_before_torchrun(tmp_path):
    proc = _run(tmp_path, ['mmdet', 'mmcv._ext'], 'bash',
                'tools/dist_train.sh', SHAPES, '2',
                '--work-dir', str(tmp_path / 'w'))
    assert proc.returncode == 1
    assert proc.stderr.strip() == LINE, proc.stderr[-3000:]
    assert proc.stdout == ''


def test_other_errors_keep_their_traceback(tmp_path):
    """Without the compiled ops, a config that does not need them fails
    as it would anyway: the hint is not a catch-all."""
    proc = _run(tmp_path, ['mmcv._ext'], sys.executable, 'tools/train.py',
                'configs/atomnas/atomnas_demo_digits.py', '--work-dir',
                str(tmp_path / 'w'), '--cfg-options',
                'model.neck.type=NoSuchNeck')
    assert proc.returncode != 0
    assert 'NoSuchNeck' in proc.stderr
    assert LINE not in proc.stderr


def test_mmengines_missing_base_package_error_is_recognised(monkeypatch):
    # What Config.fromfile raises for `_base_ = 'mmdet::...'` without mmdet.
    err = ModuleNotFoundError(
        'mmdet is not installed, please install mmdet manually')
    monkeypatch.setattr(stack, 'detection_stack_missing',
                        lambda quick=False: 'mmdet is not installed')
    assert stack.is_missing_detection_stack(err)
    assert not stack.is_missing_detection_stack(KeyError('NoSuchNeck'))
    # ...and ignored where the stack is there (the error is something else).
    monkeypatch.setattr(stack, 'detection_stack_missing',
                        lambda quick=False: None)
    assert not stack.is_missing_detection_stack(err)


def test_the_full_set_up_of_the_tests_is_seen_as_complete():
    assert stack.detection_stack_missing() is None
    assert stack.detection_stack_missing(quick=True) is None


@pytest.mark.parametrize('config', [SHAPES,
                                    'configs/atomnas/atomnas_demo_digits.py'])
def test_the_dist_check_passes_configs_when_the_stack_is_there(config):
    proc = subprocess.run(
        [sys.executable, 'atomnas_mm/utils/stack.py', config], cwd=ROOT,
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ''
