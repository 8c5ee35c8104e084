"""tools/slurm_train.sh and tools/slurm_test.sh: what they hand to srun (a
fake srun on PATH records its arguments), and the world size
tools/train.py scales the batch with under srun."""
import argparse
import importlib.util
import os
import os.path as osp
import stat
import subprocess
import sys

import pytest

from tests.conftest import ROOT

CONFIG = 'configs/atomnas/atomnas_demo_digits.py'


def _run(tmp_path, script, args, **env):
    """Run ``script`` with a fake srun; return srun's argv."""
    log = tmp_path / 'srun_args'
    srun = tmp_path / 'bin' / 'srun'
    srun.parent.mkdir(exist_ok=True)
    srun.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{log}"\nexit 0\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    full = dict(os.environ, PATH=f'{srun.parent}{os.pathsep}'
                f'{os.environ["PATH"]}', PYTHON=sys.executable, **env)
    for key in ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS'):
        if key not in env:
            full.pop(key, None)
    proc = subprocess.run(['bash', f'tools/{script}', *args], cwd=ROOT,
                          env=full, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return log.read_text().splitlines()


def test_train_script(tmp_path):
    argv = _run(tmp_path, 'slurm_train.sh',
                ['gpu_part', 'atom search', CONFIG, 'work_dirs/x',
                 '--amp', '--cfg-options', 'train_cfg.max_epochs=2'],
                GPUS='16', GPUS_PER_NODE='8', CPUS_PER_TASK='6',
                SRUN_ARGS='--time=1:00:00 --qos=high')
    python = argv.index(sys.executable)
    assert argv[:python] == [
        '-p', 'gpu_part', '--job-name=atom search', '--gres=gpu:8',
        '--ntasks=16', '--ntasks-per-node=8', '--cpus-per-task=6',
        '--kill-on-bad-exit=1', '--time=1:00:00', '--qos=high']
    assert argv[python + 1:] == [
        '-u', osp.join(ROOT, 'tools', 'train.py'), CONFIG,
        '--work-dir=work_dirs/x', '--launcher=slurm', '--amp',
        '--cfg-options', 'train_cfg.max_epochs=2']


def test_test_script_defaults_and_a_part_of_a_node(tmp_path):
    argv = _run(tmp_path, 'slurm_test.sh',
                ['p', 'eval', CONFIG, 'epoch_3.pth', '--out', 'm.json'],
                GPUS='2')
    python = argv.index(sys.executable)
    # Two GPUs of an 8-GPU node: only those two are reserved.
    assert argv[:python] == [
        '-p', 'p', '--job-name=eval', '--gres=gpu:2', '--ntasks=2',
        '--ntasks-per-node=2', '--cpus-per-task=5', '--kill-on-bad-exit=1']
    assert argv[python + 1:] == [
        '-u', osp.join(ROOT, 'tools', 'test.py'), CONFIG, 'epoch_3.pth',
        '--launcher=slurm', '--out', 'm.json']
    assert _run(tmp_path, 'slurm_test.sh', ['p', 'eval', CONFIG, 'c.pth'])[
        3:6] == ['--gres=gpu:8', '--ntasks=8', '--ntasks-per-node=8']


@pytest.mark.parametrize('launcher,env,world', [
    ('slurm', dict(SLURM_NTASKS='4'), 4),
    ('pytorch', dict(WORLD_SIZE='3', SLURM_NTASKS='4'), 3),
    ('none', dict(WORLD_SIZE='3'), 1)])
def test_train_scales_the_batch_by_srun_tasks(monkeypatch, capsys, launcher,
                                              env, world):
    """Under srun the batch is scaled before mmengine sets WORLD_SIZE."""
    from mmengine.config import Config
    spec = importlib.util.spec_from_file_location(
        'atomnas_train_tool', osp.join(ROOT, 'tools', 'train.py'))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    for key in ('WORLD_SIZE', 'SLURM_NTASKS'):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    args = argparse.Namespace(
        config=CONFIG, launcher=launcher, work_dir='w', amp=False,
        resume=None, no_validate=False, auto_scale_lr=True,
        cfg_options=None)
    train.merge_args(Config.fromfile(osp.join(ROOT, CONFIG)), args)
    assert f'({world} process(es) x' in capsys.readouterr().err
