"""Inference latency of AtomNAS nets, unfused and fused, in PyTorch and in
onnxruntime, against timm's MixNet, EfficientNet and MobileNetV2.

Two sections:

1. ``layouts``: AtomNAS-C (``--layout-archs``) fused in every layout
   (expand / depthwise / project each merged or split, see
   :mod:`atomnas_mm.models.deploy.fused`) and with its atoms padded to
   multiples of each of ``--divisors``, against the unfused net. This is
   the measurement that chose ``DEPLOY_DEFAULTS``.

2. ``nets``: the classifiers (backbone, global pool, 1000-way linear layer;
   logits out) of AtomNAS-A/B/C unfused and fused (default layout), timm's
   ``mixnet_s``, ``mixnet_m``, ``efficientnet_b0`` and ``mobilenetv2_100``
   (random weights), in PyTorch (eval, no_grad, channels_last) and in
   onnxruntime (each net exported the same way, TorchScript exporter, opset
   17, static shapes, CPU provider, all graph optimisations). In PyTorch
   the timm nets are also timed with their BNs folded into their convs
   (``+fold``), so that the fused AtomNAS nets have a like-for-like
   baseline; onnxruntime folds BN itself.

Every (runtime, batch) setting is its own round-robin over all candidates
(:func:`atomnas_mm.utils.timing.time_round_robin`): PyTorch's OpenMP
threads and onnxruntime's pool each spin for a while after a call, so the
two runtimes are never interleaved. Ratios are medians of same-round ratios
(:func:`~atomnas_mm.utils.timing.paired_ratio`). Weights are random; BN
statistics are set from one batch first
(:func:`~atomnas_mm.utils.timing.calibrate_bn`) so that no activation
decays into denormals.

Run (heavy: under the shared lock)::

    flock /tmp/atomnas-cpu.lock .venv/bin/python benchmarks/bench_deploy.py
    .venv/bin/python benchmarks/bench_deploy.py --quick    # smoke test
"""
from __future__ import annotations

import argparse
import copy
import gc
import itertools
import logging
import os
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import atomnas_mm  # noqa: F401
from atomnas_mm.models.arch.cost import count
from atomnas_mm.models.deploy import DEPLOY_DEFAULTS, ONNX_DEFAULTS
from atomnas_mm.models.deploy.onnx import (Outputs, export_onnx,
                                           max_rel_diff, ort_session,
                                           run_session)
from atomnas_mm.utils.timing import (add_common_args, calibrate_bn, median,
                                     paired_ratio, run_sections, spread,
                                     time_round_robin)

ATOMNAS = ('atomnas_a', 'atomnas_b', 'atomnas_c')
TIMM = ('mixnet_s', 'mixnet_m', 'efficientnet_b0', 'mobilenetv2_100')
# MACs at 224 of the timm nets as their papers give them (MixNet: S 256M,
# M 360M; EfficientNet-B0 390M; MobileNetV2 1.0 300M).
TIMM_MACS = {'mixnet_s': 256e6, 'mixnet_m': 360e6, 'efficientnet_b0': 390e6,
             'mobilenetv2_100': 300e6}
SHORT = {'atomnas_a': 'A', 'atomnas_b': 'B', 'atomnas_c': 'C'}
# (expand, depthwise, project), the five possible ones, by initials.
LAYOUTS = {''.join(x[0] for x in lay): lay for lay in [
    ('split', 'split', 'split'), ('split', 'split', 'merged'),
    ('merged', 'split', 'split'), ('merged', 'split', 'merged'),
    ('merged', 'merged', 'merged')]}


# --------------------------------------------------------------------- models
def atomnas_classifier(arch: str, num_classes: int = 1000) -> nn.Module:
    """mmpretrain's ImageClassifier as the configs build it, random init."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    from atomnas_mm.models.arch import load_spec
    head = load_spec(arch).head_channels
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='atomnas_mm.AtomNASNet', arch=arch,
                          norm_cfg=dict(type='BN', momentum=0.01, eps=1e-3)),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=num_classes,
                      in_channels=head)))
    quiet_mmengine()
    model.init_weights()
    return model


def quiet_mmengine() -> None:
    """mmengine logs every parameter's init at INFO level."""
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel(logging.WARNING)


def logits(model: nn.Module) -> nn.Module:
    """The classifier as ``x -> logits`` (mmpretrain's ``mode='tensor'``)."""
    return Outputs(model, lambda m, x: m(x, mode='tensor'))


def fused(model: nn.Module, **options) -> nn.Module:
    """A copy of an AtomNAS classifier with its backbone switched to
    deploy."""
    model = copy.deepcopy(model)
    model.backbone.switch_to_deploy(**options)
    return model


@torch.no_grad()
def fold_timm_bn(model: nn.Module) -> nn.Module:
    """timm's EfficientNet family with every BN folded into the conv
    registered right before it (``conv_stem``/``bn1``, ``conv_dw``/``bn2``,
    ``conv_pwl``/``bn3``... : timm registers each conv right before its
    BN), ``BatchNormAct2d`` replaced by its activation. A ``MixedConv2d``
    gets each sub-conv folded with its slice of the BN. In place."""
    try:
        from timm.layers import MixedConv2d
    except ImportError:  # pragma: no cover
        from timm.models.layers import MixedConv2d
    from atomnas_mm.models.deploy import fuse_conv_bn

    for parent in list(model.modules()):
        names = list(parent._modules)
        for prev, name in zip(names, names[1:]):
            conv, bn = parent._modules[prev], parent._modules[name]
            if not isinstance(bn, _BatchNorm):
                continue
            if isinstance(conv, nn.Conv2d):
                new = fuse_conv_bn(conv, bn, name)
                new.padding, new.dilation = conv.padding, conv.dilation
                parent._modules[prev] = new
            elif isinstance(conv, MixedConv2d):
                start = 0
                for key, sub in list(conv.items()):
                    n = sub.out_channels
                    part = copy.deepcopy(bn)
                    part.num_features = n
                    for attr in ('weight', 'bias', 'running_mean',
                                 'running_var'):
                        t = getattr(bn, attr)
                        if t is not None:
                            setattr(part, attr, type(t)(t[start:start + n]))
                    new = fuse_conv_bn(sub, part, name)
                    new.padding, new.dilation = sub.padding, sub.dilation
                    conv[key] = new
                    start += n
            else:
                continue
            rest = [m for m in (getattr(bn, 'drop', None),
                                getattr(bn, 'act', None))
                    if m is not None and not isinstance(m, nn.Identity)]
            parent._modules[name] = nn.Sequential(*rest) if rest \
                else nn.Identity()
    return model


def timm_model(name: str) -> nn.Module:
    import timm
    return timm.create_model(name, pretrained=False)


# --------------------------------------------------------------------- runners
def torch_runner(model: nn.Module, batch: int, side: int
                 ) -> Callable[[], None]:
    model = model.eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, side, side).contiguous(
        memory_format=torch.channels_last)

    def run() -> None:
        with torch.no_grad():
            model(x)
    return run


def ort_runner(session, batch: int, side: int) -> Callable[[], None]:
    import numpy as np
    x = np.random.default_rng(0).standard_normal(
        (batch, 3, side, side)).astype(np.float32)
    name = session.get_inputs()[0].name

    def run() -> None:
        session.run(None, {name: x})
    return run


def export_and_check(model: nn.Module, path: str, batch: int, side: int,
                     threads: int) -> Tuple[object, float]:
    """Export ``model`` (x -> one tensor), open a session, and return it
    with its max relative difference to PyTorch."""
    x = torch.randn(batch, 3, side, side)
    export_onnx(model, x, path)
    session = ort_session(path, threads)
    with torch.no_grad():
        ref = model.eval()(x)
    return session, max_rel_diff([ref], run_session(session, x))


# --------------------------------------------------------------------- timing
Setting = Tuple[str, int]  # (runtime, batch)


def time_settings(models: Dict[str, nn.Module], args,
                  torch_only: Sequence[str] = (),
                  for_ort: Optional[Dict[str, nn.Module]] = None
                  ) -> Dict[Setting, Dict[str, List[float]]]:
    """Time every model in every (runtime, batch) setting.

    Args:
        models: Name -> model taking (N, 3, H, W) and returning one tensor.
        torch_only: Names not exported (e.g. BN-folded timm copies: the
            same graph for onnxruntime, which folds BN itself).
        for_ort: Name -> the model to export instead (a fused net in the
            layout that onnxruntime prefers).

    Returns:
        (runtime, batch) -> name -> per-round ms.
    """
    results: Dict[Setting, Dict[str, List[float]]] = {}
    side = args.side
    for batch in args.batches:
        reps = args.reps if batch == 1 else max(1, args.reps // 2)
        if 'torch' in args.runtimes:
            cands = {n: torch_runner(m, batch, side)
                     for n, m in models.items()}
            results[('torch', batch)] = time_round_robin(cands, reps,
                                                         args.warmup)
            print(f'  timed torch batch {batch}', flush=True)
            del cands
            gc.collect()
        if 'ort' in args.runtimes:
            cands, worst = {}, []
            with tempfile.TemporaryDirectory() as tmp:
                for n, m in models.items():
                    if n in torch_only:
                        continue
                    m = (for_ort or {}).get(n, m)
                    session, diff = export_and_check(
                        m, os.path.join(tmp, f'{len(cands)}.onnx'), batch, side,
                        args.threads)
                    worst.append((diff, n))
                    cands[n] = ort_runner(session, batch, side)
            diff, name = max(worst)
            print(f'  exported batch {batch}: largest |onnxruntime - torch| '
                  f'/ max|torch| {diff:.1e} ({name})', flush=True)
            results[('ort', batch)] = time_round_robin(cands, reps,
                                                       args.warmup)
            print(f'  timed onnxruntime batch {batch}', flush=True)
            del cands
            gc.collect()
    return results


def _cols(results) -> Tuple[List[Setting], int]:
    settings = list(results)
    return settings, max(13, max(len(f'{r} b{b}') for r, b in settings) + 2)


def print_ms(results: Dict[Setting, Dict[str, List[float]]],
             names: Sequence[str]) -> None:
    """Median ms (and spread) per candidate and setting."""
    settings, width = _cols(results)
    print('median ms (spread %)')
    print(f'{"candidate":<26}' + ''.join(f'{f"{r} b{b}":>{width}}'
                                         for r, b in settings))
    for n in names:
        row = ''
        for s in settings:
            t = results[s].get(n)
            row += f'{"-":>{width}}' if t is None else \
                f'{f"{median(t):.1f} ({spread(t):.0f})":>{width}}'
        print(f'{n:<26}' + row)


def print_ratios(results: Dict[Setting, Dict[str, List[float]]],
                 names: Sequence[str], ref: str,
                 scale: Optional[Dict[str, float]] = None,
                 title: str = '') -> None:
    """Paired ratio of each candidate to ``ref`` per setting, times
    ``scale[ref] / scale[name]`` when given (e.g. MACs: cost per MAC)."""
    if not any(ref in t for t in results.values()):
        return  # e.g. a BN-folded copy, timed in PyTorch only
    settings, width = _cols(results)
    print(title or f'time / time of {ref} (median of same-round ratios; '
          '<1: faster)')
    print(f'{"candidate":<26}' + ''.join(f'{f"{r} b{b}":>{width}}'
                                         for r, b in settings))
    for n in names:
        row = ''
        for s in settings:
            t = results[s]
            if n not in t or ref not in t:
                row += f'{"-":>{width}}'
                continue
            r = paired_ratio(t, n, ref)
            if scale is not None:
                r *= scale[ref] / scale[n]
            row += f'{r:>{width}.2f}'
        print(f'{n:<26}' + row)


# --------------------------------------------------------------------- sections
def layout_name(layout: Tuple[str, str, str], divisor: int) -> str:
    e, d, p = (s[0] for s in layout)
    return f'fused {e}{d}{p} /{divisor}'


def bench_layouts(args) -> None:
    """Section 1: which fused layout and padding is fastest."""
    print(f'\n== 1. fused layouts (expand/depthwise/project: m = merged, '
          f's = split; /d = atoms padded to multiples of d), '
          f'{args.side}x{args.side} ==')
    print(f'default now: {DEPLOY_DEFAULTS}')
    for arch in args.layout_archs:
        torch.manual_seed(0)
        base = atomnas_classifier(arch)
        calibrate_bn(base, torch.randn(8, 3, args.side, args.side))
        models = {'unfused': logits(base)}
        for layout, d in itertools.product(args.layouts, args.divisors):
            e, dw, p = layout
            models[layout_name(layout, d)] = logits(fused(
                base, divisor=d, expand=e, depthwise=dw, project=p))
        print(f'-- {arch}')
        results = time_settings(models, args)
        print_ms(results, list(models))
        print_ratios(results, list(models), 'unfused')
        best = {}
        for s, t in results.items():
            name = min((n for n in t if n != 'unfused'),
                       key=lambda n: median(t[n]))
            best[s] = name
        print('fastest per setting: ' + ', '.join(
            f'{r} b{b}: {n}' for (r, b), n in best.items()))
        del models, base
        gc.collect()


def bench_nets(args) -> None:
    """Section 2: AtomNAS-A/B/C unfused and fused against timm nets."""
    print(f'\n== 2. classifiers (logits), {args.side}x{args.side}, fused '
          f'with {DEPLOY_DEFAULTS} for PyTorch, {ONNX_DEFAULTS} for '
          'onnxruntime ==')
    models: Dict[str, nn.Module] = {}
    macs: Dict[str, float] = {}
    torch_only, for_ort = [], {}
    calib = torch.randn(8, 3, args.side, args.side)
    for arch in args.archs:
        torch.manual_seed(0)
        base = atomnas_classifier(arch)
        calibrate_bn(base, calib)
        short = SHORT.get(arch, arch)
        models[f'AtomNAS-{short}'] = logits(base)
        models[f'AtomNAS-{short} fused'] = logits(fused(base))
        for_ort[f'AtomNAS-{short} fused'] = logits(fused(base,
                                                         **ONNX_DEFAULTS))
        macs[f'AtomNAS-{short}'] = macs[f'AtomNAS-{short} fused'] = \
            count(arch, 224).macs
    for name in args.timm:
        torch.manual_seed(0)
        m = timm_model(name)
        calibrate_bn(m, calib)
        models[name] = m
        folded = fold_timm_bn(copy.deepcopy(m).eval())
        with torch.no_grad():
            diff = max_rel_diff([m.eval()(calib[:2])], [folded(calib[:2])])
        if diff > 1e-4:
            print(f'  {name}: BN folding not exact ({diff:.1e}), +fold '
                  'skipped')
        else:
            models[f'{name} +fold'] = folded
            torch_only.append(f'{name} +fold')
        macs[name] = macs[f'{name} +fold'] = TIMM_MACS.get(name, float('nan'))
    results = time_settings(models, args, torch_only, for_ort)
    names = list(models)
    print('MACs at 224 (AtomNAS: counted from the real spec, 1000 classes; '
          'timm: their papers): ' + ', '.join(
              f'{n} {macs[n] / 1e6:.0f}M' for n in names
              if not n.endswith((' fused', ' +fold'))))
    print_ms(results, names)
    for ref in ('mixnet_m', 'mobilenetv2_100', 'mixnet_m +fold',
                'mobilenetv2_100 +fold'):
        if ref in models:
            print_ratios(results, names, ref)
    if 'mobilenetv2_100' in models:
        print_ratios(results, names, 'mobilenetv2_100', macs,
                     '(time / MACs) / (time / MACs of mobilenetv2_100): '
                     'cost per MAC against MobileNetV2')
    print_goals(results, args)


def print_goals(results, args) -> None:
    """The issue's goals for fused AtomNAS-C, met or not."""
    c = 'AtomNAS-C fused'
    lines = []
    for (runtime, batch), t in results.items():
        if c not in t:
            continue
        if 'mixnet_m' in t:
            r = paired_ratio(t, c, 'mixnet_m')
            lines.append(f'{runtime} b{batch}: fused C / mixnet_m {r:.2f} '
                         f'(goal <= 1.00: {"met" if r <= 1 else "MISSED"})')
        if batch == 1 and 'mobilenetv2_100' in t:
            r = paired_ratio(t, c, 'mobilenetv2_100')
            lines.append(f'{runtime} b{batch}: fused C / mobilenetv2_100 '
                         f'{r:.2f} (goal <= 1.20: '
                         f'{"met" if r <= 1.2 else "MISSED"})')
        for ref in ('mixnet_m +fold', 'mobilenetv2_100 +fold'):
            if ref in t:  # like for like: BN folded on both sides
                lines.append(f'{runtime} b{batch}: fused C / {ref} '
                             f'{paired_ratio(t, c, ref):.2f}')
    if lines:
        print('goals:\n  ' + '\n  '.join(lines))


def ort_profile(path: str, x, runs: int, threads: int) -> Dict[str, list]:
    """onnxruntime's own profile of ``runs`` calls: op type -> [ms per
    call, nodes]."""
    import json
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.enable_profiling = True
    so.profile_file_prefix = path[:-5]
    so.log_severity_level = 3
    session = ort.InferenceSession(path, so,
                                   providers=['CPUExecutionProvider'])
    for _ in range(runs):
        run_session(session, x)
    with open(session.end_profiling()) as f:
        events = json.load(f)
    per_op: Dict[str, list] = {}
    nodes = set()
    for e in events:
        if e.get('cat') != 'Node' or not e['name'].endswith('_kernel_time'):
            continue
        op = e.get('args', {}).get('op_name', '?')
        entry = per_op.setdefault(op, [0.0, set()])
        entry[0] += e['dur'] / 1e3 / runs
        entry[1].add(e['name'])
        nodes.add(e['name'])
    return {op: [ms, len(names)] for op, (ms, names) in per_op.items()}


def bench_profile(args) -> None:
    """Section 3: where the time goes, per op type, in onnxruntime (its
    profiler) and PyTorch (torch.profiler), fused AtomNAS against
    MobileNetV2 at batch 1."""
    from torch.profiler import ProfilerActivity, profile
    print(f'\n== 3. profile per op type, batch 1, {args.side}x{args.side} '
          '==')
    torch.manual_seed(0)
    calib = torch.randn(8, 3, args.side, args.side)
    models = {}
    for arch in args.layout_archs:
        base = atomnas_classifier(arch)
        calibrate_bn(base, calib)
        models[f'{SHORT.get(arch, arch)} fused'] = logits(fused(base))
    m = timm_model(args.timm[-1])
    calibrate_bn(m, calib)
    models[args.timm[-1]] = m.eval()
    x = torch.randn(1, 3, args.side, args.side)
    runs = max(args.reps, 3)
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            path = os.path.join(tmp, f'{len(os.listdir(tmp))}.onnx')
            export_onnx(model, x, path)
            ort_profile(path, x, args.warmup + 1, args.threads)  # warm-up
            prof = ort_profile(path, x, runs, args.threads)
            total = sum(ms for ms, _ in prof.values())
            print(f'-- onnxruntime, {name}: {total:.1f} ms in nodes per call')
            for op, (ms, n) in sorted(prof.items(), key=lambda kv: -kv[1][0]):
                print(f'   {op:<24}{ms:>8.2f} ms{100 * ms / total:>6.0f}%'
                      f'{n:>6} nodes')
            model = model.eval().to(memory_format=torch.channels_last)
            xc = x.contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                for _ in range(args.warmup + 1):
                    model(xc)
                with profile(activities=[ProfilerActivity.CPU]) as p:
                    for _ in range(runs):
                        model(xc)
            rows = [(e.key, e.self_cpu_time_total / 1e3 / runs,
                     e.count // runs) for e in p.key_averages()]
            total = sum(r[1] for r in rows)
            print(f'-- PyTorch, {name}: {total:.1f} ms self CPU per call')
            for key, ms, n in sorted(rows, key=lambda r: -r[1])[:8]:
                print(f'   {key:<24}{ms:>8.2f} ms{100 * ms / total:>6.0f}%'
                      f'{n:>6} calls')


SECTIONS = {'layouts': bench_layouts, 'nets': bench_nets,
            'profile': bench_profile}


def parse_args(argv: Sequence[str] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--side', type=int, default=None,
                   help='input size (default 224)')
    p.add_argument('--batches', type=int, nargs='+', default=None,
                   help='default: 1 8')
    p.add_argument('--runtimes', nargs='+', choices=['torch', 'ort'],
                   default=['torch', 'ort'])
    p.add_argument('--archs', nargs='+', default=None,
                   help='AtomNAS nets of section nets (names or spec files; '
                   'default: A, B, C)')
    p.add_argument('--timm', nargs='+', default=None,
                   help=f'timm nets of section nets (default: '
                   f'{" ".join(TIMM)})')
    p.add_argument('--layout-archs', nargs='+', default=None,
                   help='nets of section layouts (default: atomnas_c)')
    p.add_argument('--divisors', type=int, nargs='+', default=None,
                   help='paddings of section layouts (default: 1 8)')
    p.add_argument('--layouts', nargs='+', choices=list(LAYOUTS),
                   default=None,
                   help='layouts of section layouts (expand, depthwise, '
                   'project: m = merged, s = split)')
    add_common_args(p, SECTIONS, reps=15,
                    quick='smoke test: 32x32, batch 1, 1 rep, AtomNAS-A and '
                    'mobilenetv2_100, layouts sss and mmm (options given '
                    'still count)')
    args = p.parse_args(argv)
    if args.quick:
        defaults = dict(side=32, batches=[1], archs=['atomnas_a'],
                        timm=['mobilenetv2_100'], layout_archs=['atomnas_a'],
                        divisors=[1, 8], layouts=['sss', 'mmm'])
        args.reps, args.warmup = 1, 1
    else:
        defaults = dict(side=224, batches=[1, 8], archs=list(ATOMNAS),
                        timm=list(TIMM), layout_archs=['atomnas_c'],
                        divisors=[1, 8], layouts=list(LAYOUTS))
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.layouts = [LAYOUTS[n] for n in args.layouts]
    return args


def main(argv: Sequence[str] = None) -> None:
    run_sections(parse_args(argv), SECTIONS)


if __name__ == '__main__':
    main()
