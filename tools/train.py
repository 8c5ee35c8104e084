"""Train (and search) with an MMEngine Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [auto|PATH]]
                          [--amp] [--cfg-options k=v ...] [--launcher ...]
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import atomnas_mm  # noqa: F401  (registers the atomnas_mm scope)
from atomnas_mm.engine.batch_scaling import scale_to_batch
from atomnas_mm.engine.resume import latest_intact_checkpoint
from atomnas_mm.engine.search import BudgetError
from atomnas_mm.models.arch import CostModelError, SpecError
from atomnas_mm.models.checkpoint import load_checkpoint_file
from atomnas_mm.utils.seams import (setup_launcher,
                                    teardown_launcher,
                                    use_safe_checkpoint_loading)
from atomnas_mm.utils.stack import full_setup_hint


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model (AtomNAS)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or with no value (or "auto") '
        'from the latest checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic mixed precision training')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate checkpoints during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the actual total batch size')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value, e.g. '
        'train_dataloader.batch_size=32')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm',
                                               'mpi'], default='none')
    # torchrun passes --local-rank; older launchers pass --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg: Config, args) -> Config:
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        # Keep the L1 penalty when the config uses it.
        penalized = 'AtomNASOptimWrapper' in cfg.optim_wrapper.get('type', '')
        cfg.optim_wrapper.type = 'atomnas_mm.AtomNASAmpOptimWrapper' \
            if penalized else 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = resume_checkpoint(cfg.work_dir)
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise SpecError(f'{args.config}: --auto-scale-lr needs '
                            'auto_scale_lr.base_batch_size in the config (the '
                            'total batch its lr was set for)')
        cfg.auto_scale_lr.enable = True
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    for note in scale_to_batch(cfg, world_size(args.launcher)):
        print(f'[auto-scale] {note}', file=sys.stderr)
    return cfg


def world_size(launcher: str) -> int:
    """Processes of the run, before the launcher has set up anything.

    torchrun sets ``WORLD_SIZE`` for every process; srun sets
    ``SLURM_NTASKS``, which mmengine's slurm launcher copies to
    ``WORLD_SIZE`` only when the Runner starts, after the batch is scaled.
    """
    if launcher == 'none':
        return 1
    name = 'SLURM_NTASKS' if launcher == 'slurm' else 'WORLD_SIZE'
    return int(os.environ.get(name, 1))


def resume_checkpoint(work_dir: str):
    """The newest intact checkpoint of ``work_dir`` (None: start afresh),
    saying which newer files were skipped and why (a kill during a write
    leaves a truncated one)."""
    path, skipped = latest_intact_checkpoint(work_dir)
    for reason in skipped:
        print(f'[resume] skipped {reason}', file=sys.stderr)
    if path is None:
        if skipped:
            raise SpecError(f'{work_dir}: no intact checkpoint to resume '
                            'from (see above); start without --resume')
        print(f'[resume] no checkpoint in {work_dir}: starting from scratch',
              file=sys.stderr)
    else:
        print(f'[resume] resuming from {path}'
              + (' (the newest intact checkpoint)' if skipped else ''),
              file=sys.stderr)
    return path


def main():
    args = parse_args()
    try:
        cfg = merge_args(Config.fromfile(args.config), args)
        if cfg.get('load_from'):
            load_checkpoint_file(cfg.load_from)  # one line if unreadable
        setup_launcher(cfg)
        use_safe_checkpoint_loading()
        runner = Runner.from_cfg(cfg)
        runner.train()
        teardown_launcher()
    except (SpecError, BudgetError, CostModelError, FloatingPointError) as e:
        # Our errors are one line that names the file, field and fix.
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    with full_setup_hint():  # one line if mmdet is needed but absent
        main()
