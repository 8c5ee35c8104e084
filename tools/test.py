"""Evaluate a checkpoint with an MMEngine Runner.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
                         [--cfg-options k=v ...] [--launcher ...]
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import atomnas_mm  # noqa: F401
from atomnas_mm.models.arch import SpecError
from atomnas_mm.models.checkpoint import (
    CheckpointError, checkpoint_spec_or_none, check_weights_match_spec,
    load_checkpoint_file, state_dict_of)
from atomnas_mm.utils.seams import (setup_launcher,
                                    teardown_launcher,
                                    use_safe_checkpoint_loading)
from atomnas_mm.utils.stack import full_setup_hint


def parse_args():
    parser = argparse.ArgumentParser(description='Test (evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and results')
    parser.add_argument('--out', help='dump the metrics to this json file')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm',
                                               'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def read_checkpoint(cfg, path: str) -> dict:
    """Check the checkpoint before anything is built, and take an AtomNAS
    backbone's structure from the checkpoint's spec (a searched net, also
    under the supernet's config). Returns its state dict."""
    ckpt = load_checkpoint_file(path)
    state = state_dict_of(ckpt, path)
    spec = checkpoint_spec_or_none(ckpt, path)
    backbone = cfg.model.get('backbone') or {}
    if spec is not None:
        check_weights_match_spec(state, spec, path)
        if 'AtomNASNet' in str(backbone.get('type', '')):
            backbone.arch = spec.to_dict()
            backbone.pop('init_cfg', None)  # the weights come from `path`
            print(f'[test] backbone built from the spec in {path} '
                  f'({spec.num_atoms:,} atoms)', file=sys.stderr)
    return state


def check_keys(runner, state: dict, path: str) -> None:
    """Refuse weights that do not fit the model (mmengine would load what
    fits and evaluate the rest at random)."""
    model = runner.model.module if hasattr(runner.model, 'module') \
        else runner.model
    mine = {k for k in model.state_dict()
            if not k.endswith('num_batches_tracked')}
    missing = sorted(mine - set(state))
    if len(missing) == len(mine):
        raise CheckpointError(
            f'{path}: none of its {len(state)} keys belongs to the model of '
            f'the config (its first: {next(iter(state))}; the model\'s: '
            f'{sorted(mine)[0]}); is it a checkpoint of this model?')
    if missing:
        raise CheckpointError(
            f'{path}: {len(missing)} of the model\'s weights are missing '
            f'(first: {missing[0]}); is it a checkpoint of this model?')


def main():
    args = parse_args()
    try:
        cfg = Config.fromfile(args.config)
        cfg.launcher = args.launcher
        if args.cfg_options is not None:
            cfg.merge_from_dict(args.cfg_options)
        if args.work_dir is not None:
            cfg.work_dir = args.work_dir
        elif cfg.get('work_dir') is None:
            cfg.work_dir = osp.join(
                './work_dirs', osp.splitext(osp.basename(args.config))[0])
        state = read_checkpoint(cfg, args.checkpoint)
        cfg.load_from = args.checkpoint
        setup_launcher(cfg)
        use_safe_checkpoint_loading()
        runner = Runner.from_cfg(cfg)
        check_keys(runner, state, args.checkpoint)
        metrics = runner.test()
        teardown_launcher()
    except SpecError as e:
        sys.exit(f'error: {e}')
    if args.out:
        import json
        with open(args.out, 'w') as f:
            json.dump({k: float(v) for k, v in metrics.items()}, f, indent=2)


if __name__ == '__main__':
    with full_setup_hint():  # one line if mmdet is needed but absent
        main()
