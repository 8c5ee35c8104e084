"""Export the architecture (and deployable weights) of an AtomNAS search
checkpoint.

    python tools/export_arch.py work_dirs/x/epoch_50.pth
    python tools/export_arch.py work_dirs/x/epoch_50.pth --deploy
    python tools/export_arch.py work_dirs/x/epoch_50.pth --deploy \\
        --config configs/atomnas/atomnas_c_imagenet.py --recalib-batches 64

Any checkpoint written during a search carries its spec in
``meta['atomnas_spec']``; it is written as ``<out-dir>/<stem>_arch.json``
(a spec file that ``AtomNASNet(arch=...)``, ``get_flops.py`` and
``visualize_arch.py`` take). With ``--deploy`` the weights are written too,
as ``<stem>_deploy.pth``: the EMA weights when the checkpoint has them (they
are the ones the search evaluates), else the plain ones, with the spec in
their meta, so that they load into a plain net built from that spec.

EMA weights carry the running BN statistics of the training weights; with
``--config`` the model is built from the config (at the checkpoint's
shape), and its BN statistics are recomputed over the training batches that
the config's ``BNRecalibrationHook`` uses (``--recalib-batches N`` sets
another number) before saving -- the same export the search writes its
``deploy.pth`` with.
"""
from __future__ import annotations

import argparse
import copy
import os
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple

import torch

import atomnas_mm  # noqa: F401  (registry; safe loading of checkpoints)
from atomnas_mm.models.arch import ArchSpec, SpecError
from atomnas_mm.engine.search import (recalibrated_copy,
                                      save_deploy_checkpoint)
from atomnas_mm.models.checkpoint import (
    load_checkpoint_file, spec_from_checkpoint, state_dict_of)


def load_checkpoint(path: str) -> dict:
    """Load a checkpoint weights-only; SystemExit with one line if not."""
    try:
        return load_checkpoint_file(path)
    except SpecError as e:
        raise SystemExit(f'error: {e}') from None


def checkpoint_spec(ckpt: dict, path: str) -> ArchSpec:
    """The spec the checkpoint carries; SystemExit with one line if none."""
    try:
        return spec_from_checkpoint(ckpt, path)
    except SpecError as e:
        raise SystemExit(f'error: {e}') from None


def deploy_weights(ckpt: dict, path: str) -> Tuple[Dict[str, torch.Tensor],
                                                   bool]:
    """The weights to deploy: mmengine's EMA copy if there is one, else the
    checkpoint's ``state_dict``.

    Returns:
        (state_dict, whether it is the EMA one).
    """
    try:
        state = state_dict_of(ckpt, path, prefer_ema=True)
    except SpecError as e:
        raise SystemExit(f'error: {e}') from None
    ema = ckpt.get('ema_state_dict')
    is_ema = bool(ema) and any(k.startswith('module.') for k in ema)
    return state, is_ema


def config_recalib_batches(cfg) -> int:
    """The ``num_batches`` of the config's BNRecalibrationHook (0: none)."""
    for hook in cfg.get('custom_hooks') or []:
        if str(hook.get('type', '')).endswith('BNRecalibrationHook'):
            return int(hook.get('num_batches', 10))
    return 0


def recalibrate(state: Dict[str, torch.Tensor], spec: ArchSpec,
                config: str, num_batches: Optional[int],
                cfg_options: Optional[dict] = None, device: str = 'cpu',
                progress: bool = True) -> Tuple[Dict[str, torch.Tensor], int]:
    """Recompute the BN statistics of ``state`` on the config's training
    data (``num_batches`` None: the config's BNRecalibrationHook's).

    The model is built from ``config`` with ``model.backbone.arch`` set to
    ``spec`` and loads ``state`` strictly, so a mismatch between the config
    and the checkpoint fails here rather than in deployment.

    Returns:
        (the recalibrated state_dict on the CPU, batches used).
    """
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    from mmengine.runner import Runner

    if not osp.isfile(config):
        raise SystemExit(f'error: {config}: no such config file')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if num_batches is None:
        num_batches = config_recalib_batches(cfg)
    model_cfg = copy.deepcopy(cfg.model)
    if 'backbone' not in model_cfg:
        raise SystemExit(f'error: {config}: model has no backbone to set the '
                         'searched spec on')
    model_cfg.backbone.arch = spec.to_dict()
    model_cfg.backbone.pop('init_cfg', None)
    # As the Runner does: a top-level data_preprocessor joins the model, so
    # the statistics are collected on normalised inputs.
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        model = MODELS.build(model_cfg)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise SystemExit(f'error: the weights do not fit the model of '
                             f'{config}: {str(e).splitlines()[0]}') from None
        model.to(device)
        loader = Runner.build_dataloader(cfg.train_dataloader) \
            if num_batches > 0 else None
        model = recalibrated_copy(model, loader, num_batches, progress)
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}, \
        num_batches


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Command line entry point.

    Returns:
        dict: ``{'arch': json path}`` plus ``'deploy'`` with ``--deploy``.
    """
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(
        description='Export the spec (and deployable weights) of an AtomNAS '
        'search checkpoint')
    parser.add_argument('checkpoint', help='checkpoint written during or at '
                        'the end of a search (meta["atomnas_spec"])')
    parser.add_argument('--out-dir', help='output folder (default: the '
                        'checkpoint\'s)')
    parser.add_argument('--deploy', action='store_true',
                        help='also write <stem>_deploy.pth (EMA weights if '
                        'present) that loads into a net built from the spec')
    parser.add_argument('--config', help='the search config, to rebuild the '
                        'model and its training dataloader for --recalib-'
                        'batches')
    parser.add_argument('--recalib-batches', type=int, default=None,
                        metavar='N',
                        help='recompute the BN statistics of the deployed '
                        'weights over N training batches (needs --config; '
                        'default: the config\'s BNRecalibrationHook\'s)')
    parser.add_argument('--device', default='cpu',
                        help='device for the recalibration (e.g. cuda)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value')
    args = parser.parse_args(argv)
    if args.recalib_batches is not None and args.recalib_batches < 0:
        parser.error('--recalib-batches must be >= 0')
    if args.recalib_batches and not args.config:
        parser.error('--recalib-batches needs --config (the model and the '
                     'training data come from it)')
    if (args.config or args.recalib_batches) and not args.deploy:
        parser.error('--config and --recalib-batches only apply with '
                     '--deploy')

    ckpt = load_checkpoint(args.checkpoint)
    spec = checkpoint_spec(ckpt, args.checkpoint)
    stem = osp.splitext(osp.basename(args.checkpoint))[0]
    out_dir = args.out_dir or osp.dirname(osp.abspath(args.checkpoint))
    os.makedirs(out_dir, exist_ok=True)

    written = {'arch': osp.join(out_dir, f'{stem}_arch.json')}
    spec.dump(written['arch'])
    print(f'spec ({spec.num_atoms:,} atoms, {len(spec.blocks)} blocks): '
          f'{written["arch"]}')
    if not args.deploy:
        return written

    state, is_ema = deploy_weights(ckpt, args.checkpoint)
    used = 0
    if args.config:
        state, used = recalibrate(state, spec, args.config,
                                  args.recalib_batches, args.cfg_options,
                                  args.device)
    old_meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
    meta = {'ema': is_ema, 'recalib_batches': used,
            'source': osp.abspath(args.checkpoint)}
    for key in ('epoch', 'iter'):
        if key in old_meta:
            meta[key] = old_meta[key]
    written['deploy'] = save_deploy_checkpoint(
        state, spec, osp.join(out_dir, f'{stem}_deploy.pth'), meta)
    print(f'{"EMA" if is_ema else "model"} weights'
          f'{f", BN recalibrated over {used} batches" if used else ""}: '
          f'{written["deploy"]}')
    return written


if __name__ == '__main__':
    main()
