"""Run by test_ddp.py under torchrun: a 2-process gloo search with shrinks.
Each rank checks that every parameter is identical across ranks, and rank 0
writes what it saw to the json file given as argv[1]."""
import json
import os
import sys

import torch
import torch.distributed as dist

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from mmengine.runner import Runner  # noqa: E402

from atomnas_mm.utils.launch import setup_launcher  # noqa: E402
from tests.conftest import TINY_SPEC, search_cfg  # noqa: E402


def main(out, work_dir, data_root):
    cfg = search_cfg(work_dir, data_root, TINY_SPEC, max_epochs=4, interval=1)
    cfg.launcher = 'pytorch'
    cfg.custom_hooks = cfg.custom_hooks[:1]  # the shrink hook
    setup_launcher(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    model = runner.model.module
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(2)]
    dist.all_gather(gathered, flat)
    if dist.get_rank() == 0:
        with open(out, 'w') as f:
            json.dump(dict(
                identical=bool(torch.equal(gathered[0], gathered[1])),
                wrapped=type(runner.model).__name__,
                atoms=model.backbone.arch_spec.num_atoms,
                supernet_atoms=sum(sum(int(v) for v in b['kernels'].values())
                                   for b in TINY_SPEC['blocks'])), f)


if __name__ == '__main__':
    main(*sys.argv[1:])
