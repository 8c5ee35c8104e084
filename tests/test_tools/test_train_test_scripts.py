"""tools/train.py and tools/test.py as a user runs them: a short search on
the digits, then evaluation of its shrunk checkpoint with the supernet's
own config (no spec given: the checkpoint carries it)."""
import json
import os.path as osp
import subprocess
import sys

import torch

from tests.conftest import ROOT, TINY_SPEC


def _run(*args):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_train_then_test_a_shrunk_checkpoint(tmp_path, digits_root):
    arch = tmp_path / 'tiny.json'  # the spec by path
    arch.write_text(json.dumps(TINY_SPEC))
    common = [
        f'train_dataloader.dataset.data_root={digits_root}',
        f'val_dataloader.dataset.data_root={digits_root}',
        f'test_dataloader.dataset.data_root={digits_root}',
        'train_dataloader.dataset.indices=128',
        'val_dataloader.dataset.indices=64',
        'test_dataloader.dataset.indices=64',
        f'model.backbone.arch={arch}', 'model.head.in_channels=64',
    ]
    work = str(tmp_path / 'work')
    _run('tools/train.py', 'configs/atomnas/atomnas_demo_digits.py',
         '--work-dir', work, '--cfg-options', *common,
         'train_cfg.max_epochs=3', 'train_cfg.val_interval=3',
         'default_hooks.checkpoint.interval=1',
         'optim_wrapper.penalty.weight=0.5',
         'optim_wrapper.penalty.ramp_epochs=0',
         'custom_hooks.0.threshold=0.999', 'custom_hooks.0.momentum=0.0',
         'custom_hooks.0.delta=0')
    ckpt = osp.join(work, 'epoch_3.pth')
    spec = torch.load(ckpt, weights_only=True)['meta']['atomnas_spec']
    atoms = sum(int(n) for b in spec['blocks'] for n in b['kernels'].values())
    assert atoms < sum(int(n) for b in TINY_SPEC['blocks']
                       for n in b['kernels'].values())  # it shrank
    out = str(tmp_path / 'metrics.json')
    _run('tools/test.py', 'configs/atomnas/atomnas_demo_digits.py', ckpt,
         '--work-dir', str(tmp_path / 'test'), '--out', out, '--cfg-options',
         *common, 'custom_hooks=[]')
    assert 0 <= json.load(open(out))['accuracy/top1'] <= 100
    # --resume auto picks the last checkpoint up and goes on.
    proc = _run('tools/train.py', 'configs/atomnas/atomnas_demo_digits.py',
                '--work-dir', work, '--resume', '--cfg-options', *common,
                'train_cfg.max_epochs=4', 'train_cfg.val_interval=4',
                'optim_wrapper.penalty.weight=0.5',
                'optim_wrapper.penalty.ramp_epochs=0')
    assert osp.isfile(osp.join(work, 'epoch_4.pth'))
    assert 'resumed' in (proc.stdout + proc.stderr).lower()
