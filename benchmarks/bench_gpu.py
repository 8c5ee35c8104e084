"""GPU checks: train and eval throughput of AtomNAS nets against timm nets,
and the demo search under AMP (fp16 and bf16).

Three sections:

1. ``train``: images/s of one training step (forward, cross-entropy,
   backward, SGD step) under bf16 autocast, channels_last, batch 256 at
   224x224, for the supernet, AtomNAS-A and AtomNAS-C (mmpretrain
   classifiers as the configs build them) and timm's ``mixnet_s``,
   ``mixnet_m``, ``efficientnet_b0`` and ``mobilenetv2_100``.
2. ``eval``: images/s of eval forwards (no_grad, bf16 autocast, same batch
   and size) of the same nets, AtomNAS ones unfused and fused
   (``switch_to_deploy``).
3. ``amp``: the digits demo search through ``tools/train.py``'s ``--amp``
   set-up, once per dtype (float16, bfloat16), with a strong penalty so
   atoms die within a few epochs; checks that ``l1_penalty`` is logged and
   positive, that atoms were removed, and that resuming from a checkpoint
   written after a shrink restores the GradScaler state (scale and growth
   tracker) of that checkpoint.

Candidates are timed round-robin
(:func:`atomnas_mm.utils.timing.time_round_robin`) with a device
synchronisation after each call.

``--cpu`` is a small CPU mode that runs every section in seconds (tiny
batch and input, two nets, bf16 only, the AMP wrapper allowed on the CPU by
patching mmengine's GPU check, and the shipped ``tiny`` supernet for the
search). The test suite runs it so that the script cannot rot; its numbers
mean nothing.

Run::

    .venv/bin/python benchmarks/bench_gpu.py                 # on a GPU
    .venv/bin/python benchmarks/bench_gpu.py --cpu           # CPU smoke test
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import glob
import importlib.util
import json
import math
import os
import os.path as osp
import tempfile
from typing import Callable, Dict, List, Sequence

import torch
from torch import nn

from atomnas_mm.models.arch import load_spec
from atomnas_mm.utils.timing import (add_common_args, median, run_sections,
                                     time_round_robin)
# A sibling script (this folder is on sys.path when one runs as a script).
from bench_deploy import atomnas_classifier, fused, quiet_mmengine, timm_model

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

ATOMNAS = ('supernet', 'atomnas_a', 'atomnas_c')
TIMM = ('mixnet_s', 'mixnet_m', 'efficientnet_b0', 'mobilenetv2_100')
DEMO = osp.join(ROOT, 'configs', 'atomnas', 'atomnas_demo_digits.py')
# The CPU mode's search runs on this shipped spec instead of the demo
# supernet.
TINY_SUPERNET = 'tiny'


# --------------------------------------------------------------------- models
def classifier(name: str) -> nn.Module:
    """An AtomNAS classifier (logits in ``mode='tensor'``) or a timm net."""
    if name in ATOMNAS or name.endswith('.json'):
        return atomnas_classifier(name)
    return timm_model(name)


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if hasattr(model, 'backbone'):
        return model(x, mode='tensor')
    return model(x)


def synced(fn: Callable[[], None], device: torch.device) -> Callable:
    def run() -> None:
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize()
    return run


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               dtype: torch.dtype) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        with torch.autocast(x.device.type, dtype=dtype):
            loss = nn.functional.cross_entropy(logits_of(model, x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def eval_step(model: nn.Module, x: torch.Tensor,
              dtype: torch.dtype) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad(), torch.autocast(x.device.type, dtype=dtype):
            logits_of(model, x)
    return step


def print_throughput(times: Dict[str, List[float]], batch: int) -> None:
    print(f'{"candidate":<26}{"median ms":>12}{"images/s":>12}')
    for name, t in times.items():
        ms = median(t)
        print(f'{name:<26}{ms:>12.1f}{1e3 * batch / ms:>12.0f}')


def inputs(args, device):
    x = torch.randn(args.batch, 3, args.side, args.side, device=device)
    y = torch.randint(0, 1000, (args.batch, ), device=device)
    return x.contiguous(memory_format=torch.channels_last), y


# --------------------------------------------------------------------- sections
def bench_train(args) -> None:
    device = torch.device(args.device)
    print(f'\n== 1. train step, bf16 autocast, channels_last, batch '
          f'{args.batch}, {args.side}x{args.side}, {device} ==')
    x, y = inputs(args, device)
    cands = {}
    for name in args.nets:
        torch.manual_seed(0)
        m = classifier(name).to(device).train()
        m = m.to(memory_format=torch.channels_last)
        cands[name] = synced(train_step(m, x, y, torch.bfloat16), device)
    times = time_round_robin(cands, args.reps, args.warmup)
    print_throughput(times, args.batch)
    del cands
    gc.collect()


def bench_eval(args) -> None:
    device = torch.device(args.device)
    print(f'\n== 2. eval forward, bf16 autocast, channels_last, batch '
          f'{args.batch}, {args.side}x{args.side}, {device} ==')
    x, _ = inputs(args, device)
    cands = {}
    for name in args.nets:
        torch.manual_seed(0)
        m = classifier(name).eval()
        models = {name: m}
        if hasattr(m, 'backbone'):
            models[f'{name} fused'] = fused(m)
        for n, mm in models.items():
            mm = mm.to(device).to(memory_format=torch.channels_last)
            cands[n] = synced(eval_step(mm, x, torch.bfloat16), device)
    times = time_round_robin(cands, args.reps, args.warmup)
    print_throughput(times, args.batch)
    del cands
    gc.collect()


@contextlib.contextmanager
def amp_on_cpu(enabled: bool):
    """Let mmengine's AmpOptimWrapper run on the CPU (it asserts a GPU) with
    a CPU GradScaler; mmengine's autocast allows bf16 there."""
    if not enabled:
        yield
        return
    from mmengine.optim.optimizer import amp_optimizer_wrapper as amp
    saved = amp.is_cuda_available, amp.GradScaler
    amp.is_cuda_available = lambda: True
    amp.GradScaler = functools.partial(torch.amp.GradScaler, 'cpu')
    try:
        yield
    finally:
        amp.is_cuda_available, amp.GradScaler = saved


def _train_tool():
    spec = importlib.util.spec_from_file_location(
        'atomnas_train_tool', osp.join(ROOT, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def search_cfg(args, work_dir: str, data_root: str, dtype: str,
               resume: str = None):
    """The demo config as ``tools/train.py --amp`` sets it up, with a strong
    penalty and a loose threshold so that atoms die within a few epochs."""
    from mmengine.config import Config
    cfg = Config.fromfile(DEMO)
    cli = argparse.Namespace(
        amp=True, work_dir=work_dir, resume=resume, launcher='none',
        no_validate=True, auto_scale_lr=False, cfg_options=None)
    cfg = _train_tool().merge_args(cfg, cli)
    cfg.optim_wrapper.dtype = dtype
    cfg.train_dataloader.dataset.data_root = data_root  # no validation
    if args.search_subset:
        cfg.train_dataloader.dataset.indices = args.search_subset
    if args.search_arch is not None:
        cfg.model.backbone.arch = args.search_arch
        cfg.model.head.in_channels = load_spec(args.search_arch).head_channels
    cfg.train_dataloader.batch_size = 32
    cfg.train_cfg.max_epochs = args.search_epochs
    cfg.optim_wrapper.optimizer = dict(type='SGD', lr=0.05, momentum=0.9,
                                       weight_decay=1e-5)
    cfg.optim_wrapper.penalty = dict(weight=0.5, ramp_epochs=0,
                                     input_size=16)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(
        type='atomnas_mm.CheckpointHook', interval=1, max_keep_ckpts=-1,
        save_last=True)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.custom_hooks = [
        # momentum: the decay of the hook's own alpha_hat, which only
        # importance='own' keeps (the default reads the EMA copy's gamma).
        dict(type='atomnas_mm.DynamicShrinkHook', importance='own',
             momentum=0.5, threshold=0.3, delta=0, interval=2,
             by_epoch=False, input_size=16, num_classes=10),
        dict(type='EMAHook', momentum=0.1, priority='ABOVE_NORMAL'),
        dict(type='atomnas_mm.BNRecalibrationHook', num_batches=2,
             progress=False),
    ]
    cfg.log_level = 'WARNING'
    return cfg


def _scaler_state(runner) -> dict:
    return dict(runner.optim_wrapper.loss_scaler.state_dict())


def check_amp_search(args, dtype: str, data_root: str) -> Dict[str, object]:
    """One AMP search, then a resume after its first shrink. Returns what
    was checked; raises AssertionError when a check fails."""
    from mmengine.runner import Runner
    from atomnas_mm.models.checkpoint import load_checkpoint_file
    cpu = args.device == 'cpu'
    with tempfile.TemporaryDirectory() as work, amp_on_cpu(cpu), \
            open(os.devnull, 'w') as null, \
            contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        cfg = search_cfg(args, work, data_root, dtype)
        initial = load_spec(cfg.model.backbone.arch).num_atoms
        runner = Runner.from_cfg(cfg)
        runner.train()
        hub = runner.message_hub.log_scalars
        penalties = hub['train/l1_penalty'].data[0] \
            if 'train/l1_penalty' in hub else []
        final = load_spec(osp.join(work, 'searched_arch.json')).num_atoms
        # The first checkpoint written after a shrink.
        ckpts = sorted(glob.glob(osp.join(work, 'epoch_*.pth')),
                       key=lambda p: int(p.rsplit('_', 1)[1][:-4]))
        shrunk = None
        for path in ckpts:
            ckpt = load_checkpoint_file(path)
            if load_spec(ckpt['meta']['atomnas_spec']).num_atoms < initial:
                shrunk = (path, ckpt)
                break
        assert shrunk is not None, 'no checkpoint after a shrink'
        path, ckpt = shrunk
        saved = ckpt['optimizer'].get('loss_scaler')
        assert saved, f'{path}: no GradScaler state saved'
        seen = {}
        cfg2 = search_cfg(args, work, data_root, dtype, resume=path)
        cfg2.train_cfg.max_epochs = ckpt['meta']['epoch'] + 1
        runner2 = Runner.from_cfg(cfg2)
        runner2.register_hook(_record_scaler(seen), 'LOWEST')
        runner2.train()
        del runner, runner2
    restored = seen.get('scaler', {})
    same = {k: (float(restored.get(k, math.nan)), float(saved[k]))
            for k in ('scale', '_growth_tracker') if k in saved}
    result = dict(dtype=dtype, penalty_logged=len(penalties),
                  penalty_last=float(penalties[-1]) if len(penalties) else
                  math.nan, atoms=(initial, final), resumed_from=
                  osp.basename(path), scaler_restored=same)
    assert len(penalties) and all(math.isfinite(p) and p > 0
                                  for p in penalties), \
        f'{dtype}: l1_penalty not logged or not positive'
    assert final < initial, f'{dtype}: no atom was removed'
    assert all(a == b for a, b in same.values()) and same, \
        f'{dtype}: GradScaler state not restored: {same}'
    return result


def _record_scaler(seen: dict):
    """A hook that records the GradScaler state when training starts
    (after mmengine's resume has loaded the checkpoint)."""
    from mmengine.hooks import Hook

    class RecordScaler(Hook):
        def before_train(self, runner) -> None:
            seen['scaler'] = _scaler_state(runner)

    return RecordScaler()


def bench_amp(args) -> None:
    print(f'\n== 3. demo search under AMP ({", ".join(args.amp_dtypes)}), '
          f'{args.search_epochs} epochs, {args.device} ==')
    from atomnas_mm.utils.digits import convert
    with tempfile.TemporaryDirectory() as data_root:
        convert(data_root)
        for dtype in args.amp_dtypes:
            r = check_amp_search(args, dtype, data_root)
            print(json.dumps(r))
            print(f'{dtype}: ok (penalty logged {r["penalty_logged"]} '
                  f'times, atoms {r["atoms"][0]} -> {r["atoms"][1]}, '
                  f'GradScaler restored from {r["resumed_from"]})')


SECTIONS = {'train': bench_train, 'eval': bench_eval, 'amp': bench_amp}


def parse_args(argv: Sequence[str] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default=None,
                   help='default: cuda (cpu with --cpu)')
    p.add_argument('--batch', type=int, default=None, help='default 256')
    p.add_argument('--side', type=int, default=None, help='default 224')
    p.add_argument('--nets', nargs='+', default=None,
                   help=f'default: {" ".join(ATOMNAS + TIMM)}')
    p.add_argument('--amp-dtypes', nargs='+', default=['float16', 'bfloat16'],
                   choices=['float16', 'bfloat16'])
    p.add_argument('--search-epochs', type=int, default=3)
    p.add_argument('--cpu', action='store_true',
                   help='small CPU mode (smoke test, numbers meaningless)')
    add_common_args(p, SECTIONS, reps=10, quick='same as --cpu')
    args = p.parse_args(argv)
    args.search_subset, args.search_arch = None, None
    if args.quick or args.cpu:
        args.cpu = True
        args.device = args.device or 'cpu'
        args.reps, args.warmup = 1, 1
        defaults = dict(batch=2, side=32,
                        nets=['atomnas_a', 'mobilenetv2_100'])
        args.amp_dtypes = ['bfloat16']  # mmengine's CPU autocast: bf16 only
        args.search_epochs, args.search_subset = 2, 128
        args.search_arch = TINY_SUPERNET
    else:
        defaults = dict(batch=256, side=224, nets=list(ATOMNAS + TIMM))
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.device is None:
        if not torch.cuda.is_available():
            p.error('no GPU: use --cpu for the small CPU mode')
        args.device = 'cuda'
    quiet_mmengine()
    return args


def main(argv: Sequence[str] = None) -> None:
    args = parse_args(argv)
    if args.device.startswith('cuda'):
        print(f'GPU: {torch.cuda.get_device_name()}')
        torch.backends.cudnn.benchmark = True
    run_sections(args, SECTIONS)


if __name__ == '__main__':
    main()
