"""Dynamic network shrinkage: physically remove dead atoms during training.

The hook orchestrates; the parts live in :mod:`atomnas_mm.engine.search`:
importance tracking (``ImportanceTracker``), the decision (``dead_masks``,
``plan_removal``: pure functions), the transaction (``reshape_search``) and
the deployable checkpoint (``recalibrated_copy``,
``save_deploy_checkpoint``).
"""
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.dist import broadcast, get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log

from ...models.arch import count
from ...models.checkpoint import (SPEC_META_KEY, check_weights_match_spec,
                                  checkpoint_spec_or_none)
from ...registry import HOOKS
from ...utils.seams import accumulation_of, is_resuming
from ..resume import latest_intact_checkpoint
from ..search import (ImportanceTracker, current_alpha, dead_masks,
                      plan_removal, recalibrated_copy, reshape_search,
                      reshape_to_checkpoint, save_deploy_checkpoint)
from ..utils import (find_backbone, find_ema_hook, find_hook,
                     optimizer_stepped, unwrap)


@HOOKS.register_module()
class DynamicShrinkHook(Hook):
    """Track each atom's importance and remove dead atoms physically.

    Every optimizer step ``alpha_hat <- beta * alpha_hat + (1 - beta) *
    alpha`` per atom (alpha: the gamma of its depthwise BN), and the current
    MACs are logged as ``train/macs``. Every ``interval`` epochs (or
    optimizer steps),
    an atom is dead when ``|alpha_hat|`` and ``|alpha|`` are both below
    ``threshold``; once the dead atoms cost ``delta`` MACs or more they are
    removed, as one transaction, from the model, mmengine's EMA copy, the
    optimizer's state and the alpha_hat buffers, and a DDP wrapper is
    rebuilt. The removed atoms' constant output is folded into the next BN
    (a residual block left without atoms becomes the identity plus that
    constant), so the eval-mode output does not change. Each new spec is
    written to ``<work_dir>/arch/``.

    Checkpoints carry the spec (``meta['atomnas_spec']``) and alpha_hat;
    loading one (resume or ``load_from``) first shrinks the model, its EMA
    copy and the optimizer to that spec. At the end of training the work
    dir holds ``searched_arch.json`` and ``deploy.pth`` (EMA weights if EMA
    is on, BN recalibrated), which loads into a plain ``AtomNASNet`` built
    from that spec.

    Under gradient accumulation (``accumulative_counts=k``) everything
    advances per optimizer step, not per iteration, and a removal happens
    only right after a step: an epoch-end check that falls inside an
    accumulation window waits for the step that closes it. Pending
    gradients of parameters the surgery replaces would otherwise be lost,
    so N GPUs x batch B x accumulation k search as N*k GPUs x batch B do.

    Args:
        momentum: beta of alpha_hat (per optimizer step), in [0, 1).
        threshold: Importance below which an atom is dead (> 0).
        delta: Dead MACs needed before a removal happens.
        interval: Check every ``interval`` epochs (optimizer steps when
            ``by_epoch`` is False).
        by_epoch: Check at epoch ends (the original) or every iterations.
        input_size: Input (H, W) or side at which MACs are counted.
        num_classes: Classifier width counted in the logged MACs.
        deploy_recalib_batches: Training batches for the BN recalibration of
            ``deploy.pth``. None (default): the ``BNRecalibrationHook``'s
            ``num_batches`` (one setting for both), or 0 without one.
    """

    priority = 'HIGH'  # before EMAHook, so its copy is reshaped before load

    def __init__(self, momentum: float = 0.9999, threshold: float = 1e-3,
                 delta: float = 1e6, interval: int = 1, by_epoch: bool = True,
                 input_size=224, num_classes: int = 1000,
                 deploy_recalib_batches: Optional[int] = None) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f'DynamicShrinkHook: momentum (beta) must be in '
                             f'[0, 1), got {momentum}')
        if not threshold > 0:
            raise ValueError(f'DynamicShrinkHook: threshold must be > 0, got '
                             f'{threshold}')
        if delta < 0:
            raise ValueError(f'DynamicShrinkHook: delta must be >= 0, got '
                             f'{delta}')
        if interval < 1:
            raise ValueError(f'DynamicShrinkHook: interval must be >= 1, got '
                             f'{interval}')
        if deploy_recalib_batches is not None and deploy_recalib_batches < 0:
            raise ValueError('DynamicShrinkHook: deploy_recalib_batches must '
                             f'be >= 0, got {deploy_recalib_batches}')
        self.threshold = threshold
        self.delta = delta
        self.interval = interval
        self.by_epoch = by_epoch
        self.input_size = input_size
        self.num_classes = num_classes
        self.deploy_recalib_batches = deploy_recalib_batches
        self.tracker = ImportanceTracker(momentum)
        self.initial_macs: Optional[int] = None
        self.macs: Optional[int] = None
        self._backbone = None
        self._pending = False  # an epoch-end check waits for a step
        self._stepped = True  # the last iteration stepped the optimizer

    @property
    def alpha_hat(self):
        """Key (block, kernel) -> alpha_hat of that kernel's atoms."""
        return self.tracker.alpha_hat

    def _count(self, spec) -> int:
        return count(spec, self.input_size, self.num_classes).macs

    # ------------------------------------------------------------ set-up
    def _net(self, runner):
        """The searched backbone. Found once (walking every module each
        iteration would cost in the hot path); surgery and DDP re-wrapping
        keep the same backbone object."""
        if self._backbone is None:
            self._backbone = find_backbone(runner.model)
        return self._backbone

    def before_run(self, runner) -> None:
        # Fails at start-up, in one line, on a model with nothing to search.
        self._net(runner)

    def before_train(self, runner) -> None:
        backbone = self._net(runner)
        self.tracker.start(backbone)
        self.macs = self._count(backbone.arch_spec)
        if self.initial_macs is None:
            self.initial_macs = self.macs

    # ------------------------------------------------------------ training
    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        runner.message_hub.update_scalar('train/macs', float(self.macs))
        self._stepped = optimizer_stepped(runner)
        if not self._stepped:
            return  # weights unchanged: nothing to average or decide
        self.tracker.update(self._net(runner))
        if self._pending:
            self._pending = False
            self.shrink(runner)
        elif not self.by_epoch:
            k = accumulation_of(runner.optim_wrapper)
            steps = -(-(runner.iter + 1) // k)  # optimizer steps so far
            if steps % self.interval == 0:
                self.shrink(runner)

    def after_train_epoch(self, runner) -> None:
        if self.by_epoch and self.every_n_epochs(runner, self.interval):
            if self._stepped:
                self.shrink(runner, done_iters=runner.iter)
            else:
                self._pending = True  # inside an accumulation window

    # ------------------------------------------------------------ decision
    @torch.no_grad()
    def dead_atoms(self, runner):
        """(block, kernel) -> bool mask of dead atoms, identical on every
        rank (rank 0's decision is broadcast).

        Raises:
            FloatingPointError: an importance factor is NaN or inf.
        """
        try:
            masks = dead_masks(current_alpha(self._net(runner)),
                               self.alpha_hat, self.threshold)
        except FloatingPointError as e:
            raise FloatingPointError(
                f'AtomNAS shrink: {e}; nothing was removed. Training '
                f'diverged: lower the lr or lambda, then '
                f'{self._restart_hint(runner)}') from None
        if get_world_size() > 1 and masks:
            flat = torch.cat([m.to(torch.uint8).cpu() for m in masks.values()])
            broadcast(flat, 0)
            out, start = {}, 0
            for key, m in masks.items():
                out[key] = flat[start:start + len(m)].bool().to(m.device)
                start += len(m)
            masks = out
        return masks

    @staticmethod
    def _restart_hint(runner) -> str:
        path, _ = latest_intact_checkpoint(runner.work_dir)
        if path is None:
            return (f'start again (no checkpoint in {runner.work_dir} yet)')
        return f'resume from {path} (--resume {path})'

    def plan(self, runner, masks):
        """The removal for ``masks`` (see :func:`plan_removal`), or None."""
        backbone = self._net(runner)
        spec = backbone.arch_spec
        costs = count(spec, self.input_size).blocks
        atom_cost = {(i, k): float(c) for i, b in enumerate(costs)
                     for k, c in b.atom_macs.items()}
        importance = {k: v.abs() for k, v in self.alpha_hat.items()}
        return plan_removal(spec, masks, importance, atom_cost, self.delta)

    # ------------------------------------------------------------ transaction
    def shrink(self, runner, done_iters: Optional[int] = None) -> bool:
        """Remove dead atoms if they cost ``delta`` MACs. Returns whether
        anything was removed.

        Args:
            done_iters: Iterations done (mmengine counts ``runner.iter`` up
                after the iteration's hooks; default: during one).
        """
        if done_iters is None:
            done_iters = runner.iter + 1
        removal = self.plan(runner, self.dead_atoms(runner))
        if removal is None:
            return False
        for note in removal.notes:
            print_log(f'AtomNAS shrink: {note}', logger='current')
        before = self.macs
        backbone = self._net(runner)
        reshape_search(runner, backbone, removal.keep, self.tracker)
        self.macs = self._count(backbone.arch_spec)
        # Counted as mmengine's log counts: epochs and iterations from 1.
        where = f'epoch {runner.epoch + 1}' if self.by_epoch else ''
        print_log(f'AtomNAS shrink after {where + ", " if where else ""}'
                  f'iter {done_iters}: removed {removal.atoms} atoms; '
                  f'{before / 1e6:.2f}M -> {self.macs / 1e6:.2f}M MACs',
                  logger='current')
        self._write_spec(runner, f'iter_{done_iters}.json')
        return True

    def _write_spec(self, runner, name: str) -> None:
        if not is_main_process():
            return
        spec = self._net(runner).arch_spec
        out = osp.join(runner.work_dir, 'arch')
        os.makedirs(out, exist_ok=True)
        spec.dump(osp.join(out, name))
        spec.dump(osp.join(out, 'latest.json'))

    # ------------------------------------------------------------ checkpoints
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        spec = self._net(runner).arch_spec
        checkpoint.setdefault('meta', {})[SPEC_META_KEY] = spec.to_dict()
        checkpoint['atomnas_search'] = dict(
            alpha_hat=self.tracker.state_dict(),
            initial_macs=self.initial_macs, pending=self._pending)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        spec = checkpoint_spec_or_none(checkpoint, 'the checkpoint')
        if spec is not None:
            for key in ('state_dict', 'ema_state_dict'):
                if isinstance(checkpoint.get(key), dict):
                    check_weights_match_spec(checkpoint[key], spec,
                                             'the checkpoint being loaded')
            backbone = self._net(runner)
            if reshape_to_checkpoint(runner, backbone, spec) is not None:
                print_log('AtomNAS: net shrunk to the checkpoint\'s spec '
                          f'({self._count(spec) / 1e6:.2f}M '
                          'MACs) before loading its weights',
                          logger='current')
        search = checkpoint.get('atomnas_search')
        if search is not None and is_resuming(runner):
            self.tracker.load_state_dict(search['alpha_hat'])
            self.initial_macs = search.get('initial_macs')
            self._pending = bool(search.get('pending', False))

    # ------------------------------------------------------------ the end
    def recalib_batches(self, runner) -> int:
        """Batches for the deployable checkpoint's BN recalibration."""
        if self.deploy_recalib_batches is not None:
            return self.deploy_recalib_batches
        from .bn_recalibration_hook import BNRecalibrationHook
        recal = find_hook(runner, BNRecalibrationHook)
        return recal.num_batches if recal is not None else 0

    def after_train(self, runner) -> None:
        spec = self._net(runner).arch_spec
        ema_hook = find_ema_hook(runner)
        source = ema_hook.ema_model.module if ema_hook is not None \
            else unwrap(runner.model)
        batches = self.recalib_batches(runner)
        if batches:
            print_log('AtomNAS: BN recalibration of the deployable model',
                      logger='current')
        deployed = recalibrated_copy(source, runner.train_dataloader,
                                     batches)
        if not is_main_process():
            return
        spec.dump(osp.join(runner.work_dir, 'searched_arch.json'))
        path = save_deploy_checkpoint(
            deployed.state_dict(), spec,
            osp.join(runner.work_dir, 'deploy.pth'),
            dict(ema=ema_hook is not None, recalib_batches=batches,
                 epoch=runner.epoch, iter=runner.iter))
        macs = self._count(spec)
        print_log(f'AtomNAS: searched net {macs / 1e6:.2f}M MACs (from '
                  f'{(self.initial_macs or macs) / 1e6:.2f}M); spec '
                  f'{osp.join(runner.work_dir, "searched_arch.json")}, '
                  f'deployable checkpoint {path}', logger='current')
