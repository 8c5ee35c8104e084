"""Export a classifier (or its AtomNAS backbone) to ONNX, fused for
inference.

    python tools/deployment/pytorch2onnx.py CONFIG [CHECKPOINT]
        --output-file F --shape H W [--dynamic-export] [--opset N]
        [--verify] [--backbone-only] [--cfg-options k=v ...]

The graph takes a *normalised* float tensor, NCHW (mmpretrain's data
preprocessor, which subtracts the mean and divides by the std, is not part
of it), and gives the classifier's logits (before softmax), or with
``--backbone-only`` the backbone's feature maps (``out_indices`` of the
config; e.g. a detector's FPN inputs), one output per stage.

The AtomNAS backbone is switched to its fused form first
(``AtomNASNet.switch_to_deploy``: BN folded, identity blocks gone, atoms
padded to multiples of ``--divisor``). Without CHECKPOINT the weights are
random (for latency studies: ``--cfg-options model.backbone.arch=atomnas_c``).
A checkpoint that carries a spec (a search's ``deploy.pth``) builds the net
to that spec, whatever the config's ``arch``.

``--verify`` runs the file in onnxruntime (CPU, 2 threads) on a random
input and compares it with the unfused PyTorch model in eval mode (and, with
``--dynamic-export``, also at batch 2 and another size); a relative
difference above ``--tolerance`` is an error.
"""
import argparse
import copy
import os
import os.path as osp
import sys
from typing import List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config, DictAction

import atomnas_mm  # noqa: F401  (registries; safe checkpoint loading)
from atomnas_mm.models.arch import SpecError, count
from atomnas_mm.models.resolve import read_config
from atomnas_mm.models.checkpoint import (
    CheckpointError, check_weights_match_spec, checkpoint_spec_or_none,
    load_checkpoint_file, state_dict_of)
from atomnas_mm.models.deploy import FuseError, ONNX_DEFAULTS
from atomnas_mm.models.deploy.onnx import (
    DEFAULT_OPSET, EXPORTERS, Outputs, export_onnx, max_rel_diff,
    ort_session, run_session)


class ToolError(Exception):
    """A user error, printed as one line."""


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description='Export a classifier (or its backbone) to ONNX, with '
        'the AtomNAS backbone fused. Input: a normalised float tensor, NCHW '
        '(the data preprocessor is not in the graph). Output: logits, or '
        'with --backbone-only the feature maps.')
    p.add_argument('config', help='config file (mmpretrain classifier; with '
                   '--backbone-only any config whose model.backbone is '
                   'AtomNASNet, a detector\'s included)')
    p.add_argument('checkpoint', nargs='?', default=None,
                   help='checkpoint (default: random weights)')
    p.add_argument('--output-file', required=True, help='the .onnx file')
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                   default=None, help='input height and width (default: '
                   '224 224)')
    p.add_argument('--batch', type=int, default=1,
                   help='batch of the example input (the exported batch '
                   'without --dynamic-export)')
    p.add_argument('--dynamic-export', action='store_true',
                   help='make batch, height and width dynamic')
    p.add_argument('--opset', type=int, default=None,
                   help=f'ONNX opset (default {DEFAULT_OPSET}; 18 with '
                   '--exporter dynamo)')
    p.add_argument('--exporter', choices=EXPORTERS, default='torchscript',
                   help='torch.onnx.export(dynamo=False) (default: seconds) '
                   'or the torch.export based one (dynamo=True, slower, '
                   'needs onnxscript)')
    p.add_argument('--verify', action='store_true',
                   help='compare onnxruntime with the unfused PyTorch model')
    p.add_argument('--tolerance', type=float, default=1e-4,
                   help='largest relative difference --verify accepts '
                   '(max|diff| / max|PyTorch output|)')
    p.add_argument('--backbone-only', action='store_true',
                   help='export the backbone\'s feature maps (out_indices)')
    p.add_argument('--no-fuse', action='store_true',
                   help='export the unfused net (BN kept; for comparison)')
    p.add_argument('--divisor', type=int, default=ONNX_DEFAULTS['divisor'],
                   help='pad each kernel\'s atoms to a multiple of this '
                   '(1: no padding)')
    for stage in ('expand', 'depthwise', 'project'):
        p.add_argument(f'--{stage}', choices=['merged', 'split'],
                       default=ONNX_DEFAULTS[stage],
                       help=f'fused layout of the {stage} convs (default: '
                       'the fastest measured in onnxruntime)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of the config, key=value, e.g. '
                   'model.backbone.arch=atomnas_c')
    args = p.parse_args(argv)
    if args.shape is None:
        args.shape = [224, 224]
    if min(args.shape) < 1 or args.batch < 1:
        p.error('--shape and --batch must be positive')
    if args.opset is None:
        args.opset = 18 if args.exporter == 'dynamo' else DEFAULT_OPSET
    return args


# --------------------------------------------------------------------- build
def load_config(path: str, options) -> Config:
    cfg = read_config(path)  # one line for a missing or broken file
    if options:
        cfg.merge_from_dict(options)
    if not isinstance(cfg.get('model'), dict) or \
            'backbone' not in cfg.model:
        raise ToolError(f'{path}: has no model.backbone')
    return cfg


def read_weights(cfg: Config, path: str) -> dict:
    """The checkpoint's weights; an AtomNAS backbone takes its structure
    from the checkpoint's spec (checked against the weights)."""
    ckpt = load_checkpoint_file(path)
    state = state_dict_of(ckpt, path)
    spec = checkpoint_spec_or_none(ckpt, path)
    backbone = cfg.model.backbone
    if spec is not None:
        check_weights_match_spec(state, spec, path)
        if 'AtomNASNet' in str(backbone.get('type', '')):
            backbone.arch = spec.to_dict()
    backbone.pop('init_cfg', None)  # the weights come from `path`
    return state


def build_model(cfg: Config, backbone_only: bool) -> torch.nn.Module:
    """The classifier (mmpretrain registry) or the backbone alone."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    spec = cfg.model.backbone if backbone_only else cfg.model
    scope = cfg.get('default_scope') or 'mmpretrain'
    try:
        with DefaultScope.overwrite_default_scope(scope):
            model = MODELS.build(copy.deepcopy(spec))
    except SpecError:
        raise
    except Exception as e:  # noqa: BLE001  (a model the config can't build)
        raise ToolError(f'cannot build the model of the config '
                        f'({type(e).__name__}: {str(e).splitlines()[0]})'
                        ) from None
    backbone = model if backbone_only else getattr(model, 'backbone', None)
    if not hasattr(backbone, 'switch_to_deploy'):
        raise ToolError(f'the config\'s backbone is '
                        f'{type(backbone).__name__}, not AtomNASNet')
    return model


def load_weights(model: torch.nn.Module, state: dict, path: str,
                 backbone_only: bool) -> None:
    """Strictly: every weight of the model must come from the file."""
    if backbone_only:
        prefix = 'backbone.'
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()
                     if k.startswith(prefix)}
        if getattr(model, 'head', None) is None:
            state = {k: v for k, v in state.items()
                     if not k.startswith('head.')}
    mine = {k for k in model.state_dict()
            if not k.endswith('num_batches_tracked')}
    if not mine & set(state):
        raise CheckpointError(
            f'{path}: none of its keys belongs to the model of the config '
            f'(its first: {next(iter(state))}); is it a checkpoint of this '
            'model?')
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes of another net
        lines = [ln.strip() for ln in str(e).splitlines()
                 if 'size mismatch' in ln]
        raise CheckpointError(
            f'{path}: its weights do not fit the model of the config '
            f'({lines[0] if lines else str(e).splitlines()[0]}); is it a '
            'checkpoint of this model?') from None
    missing = [k for k in result.missing_keys
               if not k.endswith('num_batches_tracked')]
    for what, keys in (('missing', missing),
                       ('unexpected', result.unexpected_keys)):
        if keys:
            raise CheckpointError(
                f'{path}: {len(keys)} {what} key(s) for the model of the '
                f'config (first: {keys[0]}); is it a checkpoint of this '
                'model?')


def export_module(model: torch.nn.Module, backbone_only: bool
                  ) -> Tuple[torch.nn.Module, List[str]]:
    """``x -> outputs`` for export, and the outputs' names."""
    if backbone_only:
        names = [f'stage{i}' for i in model.out_indices]
        return Outputs(model), names
    return Outputs(model, lambda m, x: m(x, mode='tensor')), ['logits']


# --------------------------------------------------------------------- main
def verify(path: str, reference: torch.nn.Module, shapes, tolerance: float
           ) -> List[float]:
    """onnxruntime against the unfused model at each input shape."""
    try:
        session = ort_session(path)
    except ImportError:
        raise ToolError('--verify needs onnxruntime (pip install -r '
                        'requirements/runtime.txt)') from None
    diffs = []
    for shape in shapes:
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = reference(x)
        ref = ref if isinstance(ref, tuple) else (ref, )
        diff = max_rel_diff(ref, run_session(session, x))
        print(f'verify {tuple(shape)}: max |onnxruntime - PyTorch (unfused)|'
              f' / max |PyTorch| = {diff:.2e}')
        if not diff <= tolerance:
            raise ToolError(f'{path}: onnxruntime differs from PyTorch by '
                            f'{diff:.2e} (relative) at input {tuple(shape)},'
                            f' above --tolerance {tolerance:g}')
        diffs.append(diff)
    return diffs


def run(args: argparse.Namespace) -> dict:
    cfg = load_config(args.config, args.cfg_options)
    state = read_weights(cfg, args.checkpoint) if args.checkpoint else None
    model = build_model(cfg, args.backbone_only)
    if state is None:
        from mmengine.logging import MMLogger
        import logging
        # mmengine logs every parameter's init at INFO level.
        MMLogger.get_current_instance().setLevel(logging.WARNING)
        model.init_weights()
    else:
        load_weights(model, state, args.checkpoint, args.backbone_only)
    model.eval()
    backbone = model if args.backbone_only else model.backbone
    spec = backbone.arch_spec
    reference = export_module(copy.deepcopy(model), args.backbone_only)[0] \
        if args.verify else None
    if not args.no_fuse:
        backbone.switch_to_deploy(divisor=args.divisor, expand=args.expand,
                                  depthwise=args.depthwise,
                                  project=args.project)
    module, names = export_module(model, args.backbone_only)
    h, w = args.shape
    example = torch.randn(args.batch, 3, h, w)
    out_dir = osp.dirname(osp.abspath(args.output_file))
    os.makedirs(out_dir, exist_ok=True)
    try:
        export_onnx(module, example, args.output_file, names,
                    dynamic=args.dynamic_export, opset=args.opset,
                    exporter=args.exporter)
    except ImportError as e:
        raise ToolError(f'the {args.exporter} exporter needs a package that '
                        f'is not installed ({e})') from None
    head = None if args.backbone_only else \
        getattr(getattr(model, 'head', None), 'num_classes', None)
    macs = count(spec, (h, w), num_classes=head or 0).macs
    what = 'unfused' if args.no_fuse else (
        f'fused, atoms padded to multiples of {args.divisor}, expand '
        f'{args.expand}, depthwise {args.depthwise}, project {args.project}')
    print(f'wrote {args.output_file} ({osp.getsize(args.output_file) / 1e6:.1f}'
          f' MB): input "input" ({"N" if args.dynamic_export else args.batch},'
          f' 3, {"H" if args.dynamic_export else h}, '
          f'{"W" if args.dynamic_export else w}), normalised; outputs '
          f'{", ".join(names)}; {what}; {macs / 1e6:.1f}M MACs per image at '
          f'{h}x{w} (the real net{", with the classifier" if head else ""})')
    result = {'output_file': args.output_file, 'outputs': names,
              'macs': macs}
    if args.verify:
        shapes = [(args.batch, 3, h, w)]
        if args.dynamic_export:
            shapes.append((2, 3, h + 32, w + 16))
        result['max_rel_diff'] = max(verify(args.output_file, reference,
                                            shapes, args.tolerance))
    return result


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    try:
        return run(args)
    except (ToolError, SpecError, FuseError) as e:
        # SpecError covers CheckpointError; FuseError a norm that can't fold.
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    main()
