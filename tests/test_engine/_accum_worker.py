"""A short search, either as P gloo processes (torchrun) without gradient
accumulation, or as one process with ``accumulative_counts=P``: the same
total batch per optimizer step. Run by test_accumulation.py.

    python _accum_worker.py OUT WORK_DIR DATA_ROOT ACCUMULATION [with_cp]

Rank 0 writes to OUT (torch.save): the gradients of the first optimizer
step (after DDP's all-reduce, or summed over the micro-batches), and the
spec after every optimizer step at which it changed.

Data order: DefaultSampler gives rank r the samples r, r+P, r+2P... of one
permutation. The single process reads them through ``InterleavedSampler``,
which orders the same permutation so that micro-batch r of a step is what
rank r reads in that step: both runs then see the same images in the same
BN batches. Augmentation is off (the test pipeline trains), so no random
stream differs between the runs.
"""
import os
import sys

import torch
import torch.distributed as dist

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from mmengine.dataset import DefaultSampler  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.registry import DATA_SAMPLERS, HOOKS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from atomnas_mm.engine.utils import find_backbone, optimizer_stepped  # noqa
from atomnas_mm.utils.seams import (setup_launcher,  # noqa: E402
                                    teardown_launcher)
from tests.conftest import TINY_SPEC, search_cfg  # noqa: E402

BATCH = 8


@DATA_SAMPLERS.register_module(force=True)
class InterleavedSampler(DefaultSampler):
    """DefaultSampler's one-process permutation, reordered as P ranks of
    batch ``batch`` would read it, micro-batch by micro-batch."""

    def __init__(self, dataset, ranks: int, batch: int, **kwargs):
        super().__init__(dataset, **kwargs)
        self.ranks, self.batch = ranks, batch

    def __iter__(self):
        idx = list(super().__iter__())
        per_rank = [idx[r::self.ranks] for r in range(self.ranks)]
        out = []
        for s in range(len(per_rank[0]) // self.batch):
            for r in range(self.ranks):
                out += per_rank[r][s * self.batch:(s + 1) * self.batch]
        return iter(out)


@HOOKS.register_module(force=True)
class Recorder(Hook):
    priority = 'LOWEST'  # after the shrink hook

    def __init__(self):
        self.grads, self.specs = None, []

    def before_train(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') \
            else runner.model
        opt = runner.optim_wrapper.optimizer
        real_step = opt.step

        def step(*args, **kwargs):
            if self.grads is None:
                self.grads = {n: p.grad.detach().clone()
                              for n, p in model.named_parameters()
                              if p.grad is not None}
            return real_step(*args, **kwargs)

        opt.step = step
        self.model = model

    def _record(self, runner, steps):
        spec = find_backbone(self.model).arch_spec.to_json()
        if not self.specs or self.specs[-1][1] != spec:
            self.specs.append((steps, spec))

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if optimizer_stepped(runner):
            k = runner.optim_wrapper._accumulative_counts
            self._record(runner, -(-(runner.iter + 1) // k))

    def after_train_epoch(self, runner):
        k = runner.optim_wrapper._accumulative_counts
        self._record(runner, -(-runner.iter // k))


def main(out, work_dir, data_root, accumulation, with_cp=''):
    k = int(accumulation)
    cfg = search_cfg(work_dir, data_root, TINY_SPEC, max_epochs=3,
                     subset=128, interval=1)
    cfg.model.backbone.with_cp = with_cp == 'with_cp'
    # Equivalent runs need equivalent inputs: no random augmentation.
    cfg.train_dataloader.dataset.pipeline = cfg.test_dataloader.dataset.pipeline
    cfg.train_dataloader.batch_size = BATCH
    cfg.train_cfg.val_interval = 100  # no validation in between
    cfg.optim_wrapper.accumulative_counts = k
    cfg.custom_hooks = [
        # The authors' rules: alpha_hat from the EMA copy, the gate on
        # atoms dead by alpha_hat, the last epoch's removal.
        dict(type='atomnas_mm.DynamicShrinkHook', threshold=0.3, delta=0,
             interval=1, by_epoch=True, input_size=16, num_classes=10),
        dict(type='atomnas_mm.EMAHook', momentum=0.1,
             priority='ABOVE_NORMAL'),
        dict(type='Recorder'),
    ]
    if k > 1:
        cfg.train_dataloader.sampler = dict(
            type='InterleavedSampler', ranks=k, batch=BATCH, shuffle=True,
            seed=0)
    else:
        cfg.train_dataloader.sampler = dict(type='DefaultSampler',
                                            shuffle=True, seed=0)
        cfg.launcher = 'pytorch'
        setup_launcher(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    if not dist.is_initialized() or dist.get_rank() == 0:
        rec = next(h for h in runner.hooks if isinstance(h, Recorder))
        torch.save(dict(grads=rec.grads, specs=rec.specs,
                        iters=runner.iter), out)

    teardown_launcher()  # all ranks done: no abort in gloo at exit


if __name__ == '__main__':
    main(*sys.argv[1:])
