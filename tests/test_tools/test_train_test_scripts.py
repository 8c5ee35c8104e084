"""tools/train.py and tools/test.py as a user runs them: a short search on
the digits, then evaluation of its shrunk checkpoint with the supernet's
own config (no spec given: the checkpoint carries it)."""
import json
import os.path as osp
import shutil
import subprocess
import sys

import torch

from atomnas_mm.models.checkpoint import load_checkpoint_file
from tests.conftest import ROOT, TINY_SPEC


def _run(*args, ok=True):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _one_line_error(proc, *fragments):
    """The tool failed with one line that names what it should, and no
    traceback."""
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: '), last
    for f in fragments:
        assert f in last, (f, last)


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
         'custom_hooks.0.threshold=0.999',
         'custom_hooks.0.delta=0')
    ckpt = osp.join(work, 'epoch_3.pth')
    spec = load_checkpoint_file(ckpt)['meta']['atomnas_spec']
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

    # A kill while writing epoch 5 left it truncated (as mmengine's own
    # CheckpointHook can): --resume names it and takes epoch 4.
    for name in ('epoch_4.pth', 'last_checkpoint'):
        shutil.copy(osp.join(work, name), str(tmp_path / name))
    shutil.copy(osp.join(work, 'epoch_4.pth'), osp.join(work, 'epoch_5.pth'))
    with open(osp.join(work, 'epoch_5.pth'), 'r+b') as f:
        f.truncate(osp.getsize(osp.join(work, 'epoch_5.pth')) // 3)
    with open(osp.join(work, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work, 'epoch_5.pth'))
    resume5 = ['tools/train.py', 'configs/atomnas/atomnas_demo_digits.py',
               '--work-dir', work, '--resume', '--cfg-options', *common,
               'train_cfg.max_epochs=5', 'train_cfg.val_interval=5',
               'optim_wrapper.penalty.weight=0.5',
               'optim_wrapper.penalty.ramp_epochs=0']
    proc = _run(*resume5)
    assert 'epoch_5.pth: the file is truncated' in proc.stderr
    assert f'resuming from {osp.join(work, "epoch_4.pth")} (the newest ' \
        'intact checkpoint)' in proc.stderr
    assert load_checkpoint_file(osp.join(work, 'epoch_5.pth'))['meta'][
        'epoch'] == 5
    # An empty last_checkpoint (mmengine: "FileNotFoundError:  can not be
    # found") falls back to the numbered checkpoints.
    open(osp.join(work, 'last_checkpoint'), 'w').close()
    resume5[-4] = 'train_cfg.max_epochs=6'
    proc = _run(*resume5)
    assert f'resuming from {osp.join(work, "epoch_5.pth")}' in proc.stderr


def test_test_script_refuses_bad_checkpoints_in_one_line(tmp_path,
                                                         digits_root):
    import torchvision
    cases = {
        'empty.pth': lambda p: open(p, 'wb').close(),
        'tensor.pth': lambda p: torch.save(torch.zeros(3), p),
        'resnet18.pth': lambda p: torch.save(
            dict(state_dict=torchvision.models.resnet18().state_dict()), p),
    }
    expected = {'empty.pth': 'empty', 'tensor.pth': 'not a checkpoint',
                'resnet18.pth': 'none of its'}
    for name, make in cases.items():
        path = str(tmp_path / name)
        make(path)
        proc = _run('tools/test.py', 'configs/atomnas/atomnas_demo_digits.py',
                    path, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                    f'test_dataloader.dataset.data_root={digits_root}',
                    ok=False)
        _one_line_error(proc, path, expected[name])
