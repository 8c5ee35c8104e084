"""Export the architecture (and deployable weights) of an AtomNAS search
checkpoint.

    python tools/export_arch.py work_dirs/x/epoch_50.pth
    python tools/export_arch.py work_dirs/x/epoch_50.pth --deploy
    python tools/export_arch.py work_dirs/x/epoch_50.pth --deploy \\
        --config configs/atomnas/atomnas_c_search.py --recalib-batches 100

Any checkpoint written during a search carries its spec in
``meta['atomnas_spec']``; it is written as ``<out-dir>/<stem>_arch.json``
(a spec file that ``AtomNASNet(arch=...)``, ``get_flops.py`` and
``visualize_arch.py`` take). With ``--deploy`` the weights are written too,
as ``<stem>_deploy.pth``: the EMA weights when the checkpoint has them (they
are the ones the search evaluates), else the plain ones, with the spec in
their meta, so that they load into a plain net built from that spec.

EMA weights carry the running BN statistics of the training weights; with
``--config`` and ``--recalib-batches N`` the model is built from the config
(at the checkpoint's shape), and its BN statistics are recomputed over N
batches of the config's training dataloader before saving.
"""
from __future__ import annotations

import argparse
import copy
import os
import os.path as osp
import sys
from typing import Dict, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402

import atomnas_mm  # noqa: E402,F401  (registry; safe loading of checkpoints)
from atomnas_mm.models.arch import ArchSpec, SpecError  # noqa: E402
from atomnas_mm.models.checkpoint import (  # noqa: E402
    SPEC_META_KEY, load_checkpoint_file, spec_from_checkpoint)

EMA_PREFIX = 'module.'


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
    """The weights to deploy: mmengine's EMA copy if there is one (its
    ``module.`` prefix stripped, its ``steps`` counter dropped), else the
    checkpoint's ``state_dict``.

    Returns:
        (state_dict, whether it is the EMA one).
    """
    ema = ckpt.get('ema_state_dict')
    if ema:
        state = {k[len(EMA_PREFIX):]: v for k, v in ema.items()
                 if k.startswith(EMA_PREFIX)}
        return state, True
    state = ckpt.get('state_dict')
    if not isinstance(state, dict) or not state:
        raise SystemExit(f'error: {path}: the checkpoint has no state_dict '
                         'and no ema_state_dict')
    return dict(state), False


def recalibrate(state: Dict[str, torch.Tensor], spec: ArchSpec,
                config: str, num_batches: int,
                cfg_options: Optional[dict] = None, device: str = 'cpu',
                progress: bool = True) -> Tuple[Dict[str, torch.Tensor], int]:
    """Recompute the BN statistics of ``state`` on the config's training
    data.

    The model is built from ``config`` with ``model.backbone.arch`` set to
    ``spec`` and loads ``state`` strictly, so a mismatch between the config
    and the checkpoint fails here rather than in deployment.

    Returns:
        (the recalibrated state_dict on the CPU, batches used).
    """
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    from mmengine.runner import Runner

    from atomnas_mm.engine.recalibrate import recalibrate_bn

    if not osp.isfile(config):
        raise SystemExit(f'error: {config}: no such config file')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    model_cfg = copy.deepcopy(cfg.model)
    if 'backbone' not in model_cfg:
        raise SystemExit(f'error: {config}: model has no backbone to set the '
                         'searched spec on')
    model_cfg.backbone.arch = spec.to_dict()
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
        loader = Runner.build_dataloader(cfg.train_dataloader)
        used = recalibrate_bn(model, loader, num_batches, progress)
    if used < num_batches:
        print(f'warning: the training dataloader gave {used} batches, not '
              f'{num_batches}', file=sys.stderr)
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}, used


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
    parser.add_argument('--recalib-batches', type=int, default=0, metavar='N',
                        help='recompute the BN statistics of the deployed '
                        'weights over N training batches (needs --config)')
    parser.add_argument('--device', default='cpu',
                        help='device for the recalibration (e.g. cuda)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value')
    args = parser.parse_args(argv)
    if args.recalib_batches < 0:
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
    if args.config and args.recalib_batches > 0:
        state, used = recalibrate(state, spec, args.config,
                                  args.recalib_batches, args.cfg_options,
                                  args.device)
    old_meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
    meta = {SPEC_META_KEY: spec.to_dict(), 'ema': is_ema,
            'recalib_batches': used,
            'source': osp.abspath(args.checkpoint)}
    for key in ('epoch', 'iter'):
        if key in old_meta:
            meta[key] = old_meta[key]
    written['deploy'] = osp.join(out_dir, f'{stem}_deploy.pth')
    tmp = written['deploy'] + '.tmp'
    torch.save(dict(state_dict=state, meta=meta), tmp)
    os.replace(tmp, written['deploy'])  # never leave a half-written file
    print(f'{"EMA" if is_ema else "model"} weights'
          f'{f", BN recalibrated over {used} batches" if used else ""}: '
          f'{written["deploy"]}')
    return written


if __name__ == '__main__':
    main()
