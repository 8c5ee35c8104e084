"""Run by test_ddp.py under torchrun: a 2-process gloo search with shrinks,
EMA on.

Right after each shrink, before the DDP wrapper is rebuilt, every rank
fingerprints its parameters, optimizer state, alpha_hat, EMA parameters and
spec, and the ranks compare them. Rank 0 writes what it saw to the json
file given as argv[1]. With ``sabotage`` as argv[4], rank 1 removes one
atom more than rank 0 at the first shrink (as a surgery that skipped the
broadcast would): the comparison must see it, and the run stops there. With
``budget``, the search has a MACs target and channel divisor 4, and the
budget controller's state is compared too (after every shrink and at the
end).
"""
import hashlib
import json
import os
import sys

import torch
import torch.distributed as dist

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from mmengine.runner import Runner  # noqa: E402

from atomnas_mm.engine import DynamicShrinkHook  # noqa: E402
from atomnas_mm.engine.search import transaction  # noqa: E402
from atomnas_mm.engine.utils import ema_backbone, find_ema_hook  # noqa: E402
from atomnas_mm.utils.seams import (setup_launcher,  # noqa: E402
                                    teardown_launcher)
from tests.conftest import TINY_SPEC, search_cfg  # noqa: E402


class Diverged(Exception):
    pass


def _digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def fingerprint(runner, hook) -> dict:
    model = runner.model.module if hasattr(runner.model, 'module') \
        else runner.model
    opt = runner.optim_wrapper.optimizer
    state = [v for g in opt.param_groups for p in g['params']
             for _, v in sorted(opt.state.get(p, {}).items())
             if torch.is_tensor(v)]
    ema = ema_backbone(find_ema_hook(runner))
    out = dict(
        spec=model.backbone.arch_spec.to_json(),
        params=_digest(model.parameters()),
        optimizer=_digest(state),
        alpha_hat=_digest(v for _, v in sorted(hook.alpha_hat.items())),
        ema=_digest(ema.parameters()))
    budget = hook.state.budget
    if budget is not None:
        out['budget'] = json.dumps(budget.state_dict(), sort_keys=True)
    return out


def _compare(mine: dict) -> dict:
    everyone = [None, None]
    dist.all_gather_object(everyone, mine)
    return {k: everyone[0][k] == everyone[1][k] for k in mine}


def main(out, work_dir, data_root, mode='check'):
    cfg = search_cfg(work_dir, data_root, TINY_SPEC, max_epochs=4, interval=1)
    cfg.launcher = 'pytorch'
    cfg.custom_hooks = cfg.custom_hooks[:2]  # the shrink hook and EMA
    if mode == 'budget':
        cfg.optim_wrapper.penalty.weight = 0.05
        cfg.optim_wrapper.penalty.target = dict(macs=100_000)
        cfg.custom_hooks[0].channel_divisor = 4
    setup_launcher(cfg)
    runner = Runner.from_cfg(cfg)
    hook = next(h for h in runner.hooks if isinstance(h, DynamicShrinkHook))
    checks = []
    real_rewrap = transaction.rewrap

    def compared_rewrap(runner_):
        same = _compare(fingerprint(runner_, hook))
        checks.append(same)
        if not all(same.values()):
            raise Diverged(same)
        real_rewrap(runner_)

    transaction.rewrap = compared_rewrap
    if mode == 'sabotage':
        real_plan = hook.plan

        def plan_one_more_on_rank1(runner_, masks, *args, **kwargs):
            # Only when both ranks remove something (masks are identical on
            # both, so they agree on this): then rank 1 removes one more.
            if dist.get_rank() == 1 and any(m.any() for m in masks.values()):
                masks = {k: m.clone() for k, m in masks.items()}
                key = next(k for k, m in masks.items() if not m.all())
                masks[key][(~masks[key]).nonzero()[0]] = True
            return real_plan(runner_, masks, *args, **kwargs)

        hook.plan = plan_one_more_on_rank1
    diverged = False
    try:
        runner.train()
        if mode == 'budget':  # the controller's end state on both ranks
            checks.append(dict(end=_compare(fingerprint(runner, hook))))
    except Diverged:
        diverged = True
    model = runner.model.module if hasattr(runner.model, 'module') \
        else runner.model
    if dist.get_rank() == 0:
        with open(out, 'w') as f:
            json.dump(dict(
                checks=checks, diverged=diverged,
                wrapped=type(runner.model).__name__,
                atoms=model.backbone.arch_spec.num_atoms,
                spec=model.backbone.arch_spec.to_dict(),
                budget_done=getattr(hook.state.budget, 'done', None),
                supernet_atoms=sum(sum(int(v) for v in b['kernels'].values())
                                   for b in TINY_SPEC['blocks'])), f)

    teardown_launcher()  # all ranks done: no abort in gloo at exit


if __name__ == '__main__':
    main(*sys.argv[1:])
