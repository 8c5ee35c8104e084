"""Gradient accumulation searches as more processes do.

One process with ``accumulative_counts=4`` against four gloo processes
without, the same seed and data order (see _accum_worker.py): the first
step's gradients agree within float tolerance, the same atoms go at the
same optimizer steps, and the specs agree to the end. The four processes
also run with activation checkpointing (``with_cp``), so the same check
covers it under DDP and shrinking.
"""
import os
import os.path as osp
import subprocess
import sys

import torch
from mmengine.runner import Runner

from atomnas_mm.engine import DynamicShrinkHook
from tests.conftest import ROOT, TINY_SPEC, search_cfg

WORKER = osp.join(ROOT, 'tests', 'test_engine', '_accum_worker.py')


def _run(args, launcher=()):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, *launcher, WORKER, *args],
                          env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_accumulation_matches_more_processes(tmp_path, digits_root):
    ddp, acc = str(tmp_path / 'ddp.pt'), str(tmp_path / 'acc.pt')
    _run([ddp, str(tmp_path / 'w_ddp'), digits_root, '1', 'with_cp'],
         [sys.executable, '-m', 'torch.distributed.run',
          '--nproc_per_node=4', '--master_port=29621'][1:])
    _run([acc, str(tmp_path / 'w_acc'), digits_root, '4'])
    a = torch.load(ddp, weights_only=False)
    b = torch.load(acc, weights_only=False)
    assert b['iters'] == 4 * a['iters']  # the same optimizer steps
    assert a['grads'].keys() == b['grads'].keys() and a['grads']
    for name, g in a['grads'].items():
        assert torch.allclose(g, b['grads'][name], rtol=1e-4,
                              atol=1e-6 * g.abs().max()), name
    # The spec after every step where it changed: same steps, same atoms.
    assert len(a['specs']) >= 2  # it shrank
    assert a['specs'] == b['specs']


def test_epoch_end_inside_an_accumulation_window_waits(tmp_path,
                                                       digits_root):
    """16 iterations per epoch, 3 per step: epoch ends fall inside a
    window; the removal waits for the step that closes it, when no
    gradient is pending."""
    cfg = search_cfg(tmp_path, digits_root, TINY_SPEC, max_epochs=2,
                     subset=128, interval=1)
    cfg.train_dataloader.batch_size = 8
    cfg.optim_wrapper.accumulative_counts = 3
    cfg.custom_hooks[0].update(by_epoch=True)
    runner = Runner.from_cfg(cfg)
    hook = next(h for h in runner.hooks if isinstance(h, DynamicShrinkHook))
    seen = []
    real = hook.shrink

    def shrink(runner_, **kwargs):
        pending = [p for p in runner_.model.parameters()
                   if p.grad is not None and p.grad.abs().sum() > 0]
        seen.append((runner_.iter, len(pending)))
        return real(runner_, **kwargs)

    hook.shrink = shrink
    runner.train()
    assert seen, 'no check happened'
    for it, pending in seen:
        assert (it + 1) % 3 == 0 or it + 1 == 32, it  # right after a step
        assert pending == 0
    # The epoch-1 check (after iteration 16) ran at iteration 18.
    assert seen[0][0] == 17
