"""Dynamic network shrinkage: physically remove dead atoms during training."""
import copy
import gc
import os
import os.path as osp
from typing import Dict, Optional, Tuple

import torch
from mmengine.dist import broadcast, get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper

from ...models.arch import ArchSpec, count
from ...models.checkpoint import SPEC_META_KEY
from ...registry import HOOKS
from ..recalibrate import recalibrate_bn
from ..utils import (ema_backbone, find_backbone, find_ema_hook,
                     follow_in_optimizer, refresh_ema, unwrap)

Key = Tuple[int, int]  # (block index, kernel size)


@HOOKS.register_module()
class DynamicShrinkHook(Hook):
    """Track each atom's importance and remove dead atoms physically.

    Every iteration ``alpha_hat <- beta * alpha_hat + (1 - beta) * alpha``
    per atom (alpha: the gamma of its depthwise BN), and the current MACs
    are logged as ``train/macs``. Every ``interval`` epochs (or iterations),
    an atom is dead when ``|alpha_hat|`` and ``|alpha|`` are both below
    ``threshold``; once the dead atoms cost ``delta`` MACs or more they are
    removed, as one transaction, from the model, mmengine's EMA copy, the
    optimizer's state and the alpha_hat buffers, and a DDP wrapper is
    rebuilt. The removed atoms' constant output is folded into the next BN,
    so the eval-mode output does not change. Each new spec is written to
    ``<work_dir>/arch/``.

    Checkpoints carry the spec (``meta['atomnas_spec']``) and alpha_hat;
    loading one (resume or ``load_from``) first shrinks the model, its EMA
    copy and the optimizer to that spec. At the end of training the work
    dir holds ``searched_arch.json`` and ``deploy.pth`` (EMA weights if EMA
    is on, BN recalibrated), which loads into a plain ``AtomNASNet`` built
    from that spec.

    Args:
        momentum: beta of alpha_hat, in [0, 1).
        threshold: Importance below which an atom is dead (> 0).
        delta: Dead MACs needed before a removal happens.
        interval: Check every ``interval`` epochs (iterations when
            ``by_epoch`` is False).
        by_epoch: Check at epoch ends (the original) or every iterations.
        input_size: Input (H, W) or side at which MACs are counted.
        num_classes: Classifier width counted in the logged MACs.
        deploy_recalib_batches: Training batches for the BN recalibration of
            the deployable checkpoint (0: none).
    """

    priority = 'HIGH'  # before EMAHook, so its copy is reshaped before load

    def __init__(self, momentum: float = 0.9999, threshold: float = 1e-3,
                 delta: float = 1e6, interval: int = 1, by_epoch: bool = True,
                 input_size=224, num_classes: int = 1000,
                 deploy_recalib_batches: int = 10) -> None:
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
        self.momentum = momentum
        self.threshold = threshold
        self.delta = delta
        self.interval = interval
        self.by_epoch = by_epoch
        self.input_size = input_size
        self.num_classes = num_classes
        self.deploy_recalib_batches = deploy_recalib_batches
        self.alpha_hat: Dict[Key, torch.Tensor] = {}
        self.initial_macs: Optional[int] = None
        self.macs: Optional[int] = None
        self._backbone = None

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
        if not self.alpha_hat:
            self.alpha_hat = {
                (i, k): bn.weight.detach().float().clone()
                for i, b in enumerate(backbone.blocks)
                for k, bn in b.importance_bns().items()
            }
        self.macs = self._count(backbone.arch_spec)
        if self.initial_macs is None:
            self.initial_macs = self.macs

    # ------------------------------------------------------------ training
    @torch.no_grad()
    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        backbone = self._net(runner)
        beta = self.momentum
        for i, b in enumerate(backbone.blocks):
            for k, bn in b.importance_bns().items():
                ah = self.alpha_hat[(i, k)]
                ah.mul_(beta).add_(bn.weight.detach().float().to(ah.device),
                                   alpha=1 - beta)
        runner.message_hub.update_scalar('train/macs', float(self.macs))
        if not self.by_epoch and self.every_n_train_iters(runner,
                                                          self.interval):
            self.shrink(runner)

    def after_train_epoch(self, runner) -> None:
        if self.by_epoch and self.every_n_epochs(runner, self.interval):
            self.shrink(runner)

    # ------------------------------------------------------------ decision
    @torch.no_grad()
    def dead_atoms(self, runner) -> Dict[Key, torch.Tensor]:
        """(block, kernel) -> bool mask of dead atoms, identical on every
        rank (rank 0's decision is broadcast).

        Raises:
            FloatingPointError: an importance factor is NaN or inf.
        """
        backbone = self._net(runner)
        masks: Dict[Key, torch.Tensor] = {}
        for i, b in enumerate(backbone.blocks):
            for k, bn in b.importance_bns().items():
                alpha = bn.weight.detach().float()
                ah = self.alpha_hat[(i, k)].to(alpha.device)
                if not (torch.isfinite(alpha).all()
                        and torch.isfinite(ah).all()):
                    raise FloatingPointError(
                        f'AtomNAS shrink: block {i} kernel {k} has a NaN/inf '
                        'BN gamma (importance); nothing was removed. Training '
                        'diverged: lower the lr or lambda and resume from the '
                        f'last checkpoint in {runner.work_dir}')
                masks[(i, k)] = (alpha.abs() < self.threshold) & \
                    (ah.abs() < self.threshold)
        if get_world_size() > 1 and masks:
            flat = torch.cat([m.to(torch.uint8).cpu() for m in masks.values()])
            broadcast(flat, 0)
            out, start = {}, 0
            for key, m in masks.items():
                out[key] = flat[start:start + len(m)].bool().to(m.device)
                start += len(m)
            masks = out
        return masks

    def plan(self, runner, masks: Dict[Key, torch.Tensor]):
        """Turn dead masks into keep-indices per block; None when the dead
        atoms cost less than ``delta``."""
        backbone = self._net(runner)
        costs = count(backbone.arch_spec, self.input_size).blocks
        dead_macs = sum(int(m.sum()) * costs[i].atom_macs[k]
                        for (i, k), m in masks.items())
        if dead_macs == 0 or dead_macs < self.delta:
            return None, dead_macs
        plan = {}
        for i, b in enumerate(backbone.blocks):
            keys = [(i, k) for k in b.kernels]
            if not any(masks[key].any() for key in keys):
                continue
            keep = {k: (~masks[(i, k)]).nonzero().flatten() for k in b.kernels}
            if not any(len(v) for v in keep.values()) and not b.has_residual:
                # Cannot become the identity: keep its strongest atom.
                best = max(keys, key=lambda key: float(
                    self.alpha_hat[key].abs().max()))
                idx = self.alpha_hat[best].abs().argmax().view(1)
                keep = {best[1]: idx.to(masks[best].device)}
                print_log(f'AtomNAS shrink: every atom of block {i} is dead '
                          f'but it has no residual; keeping its strongest '
                          f'atom (kernel {best[1]})', logger='current')
            plan[i] = keep
        return plan, dead_macs

    # ------------------------------------------------------------ transaction
    def shrink(self, runner) -> bool:
        """Remove dead atoms if they cost ``delta`` MACs. Returns whether
        anything was removed."""
        masks = self.dead_atoms(runner)
        plan, dead_macs = self.plan(runner, masks)
        if plan is None:
            return False
        before = self.macs
        atoms = self._net(runner).arch_spec.num_atoms
        self.apply(runner, plan)
        removed = atoms - self._net(runner).arch_spec.num_atoms
        print_log(f'AtomNAS shrink at epoch {runner.epoch}, iter {runner.iter}'
                  f': removed {removed} atoms; '
                  f'{before / 1e6:.2f}M -> {self.macs / 1e6:.2f}M MACs',
                  logger='current')
        self._write_spec(runner, f'iter_{runner.iter}.json')
        return True

    def apply(self, runner, plan) -> None:
        """Apply keep-indices to everything that holds per-atom state."""
        backbone = self._net(runner)
        records = backbone.keep_atoms(plan)
        ema_hook = find_ema_hook(runner)
        ema_net = ema_backbone(ema_hook)
        if ema_net is not None:
            ema_net.keep_atoms(plan)
            refresh_ema(ema_hook)
        if isinstance(runner.optim_wrapper, OptimWrapper):
            follow_in_optimizer(runner.optim_wrapper.optimizer, records)
        for key in list(self.alpha_hat):
            if key[0] not in plan:
                continue
            idx = plan[key[0]].get(key[1])
            if idx is None or not len(idx):
                del self.alpha_hat[key]
            else:
                ah = self.alpha_hat[key]
                self.alpha_hat[key] = ah[torch.as_tensor(idx).to(ah.device)]
        self._rewrap(runner)
        self.macs = self._count(backbone.arch_spec)

    @staticmethod
    def _rewrap(runner) -> None:
        """DDP keeps per-parameter buckets: rebuild it around the new
        parameters (the old wrapper's hooks go with it)."""
        if not is_model_wrapper(runner.model):
            return
        module = runner.model.module
        old = runner.model
        runner.model = None
        del old
        gc.collect()
        runner.model = runner.wrap_model(runner.cfg.get('model_wrapper_cfg'),
                                         module)

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
            alpha_hat={f'{i}.{k}': v.cpu() for (i, k), v in
                       self.alpha_hat.items()},
            initial_macs=self.initial_macs)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        spec = checkpoint.get('meta', {}).get(SPEC_META_KEY)
        if spec is not None:
            backbone = self._net(runner)
            if ArchSpec.load(spec) != backbone.arch_spec:
                records = backbone.reshape_to(spec, 'checkpoint')
                ema_net = ema_backbone(find_ema_hook(runner))
                if ema_net is not None:
                    ema_net.reshape_to(spec, 'checkpoint')
                    refresh_ema(find_ema_hook(runner))
                if isinstance(runner.optim_wrapper, OptimWrapper):
                    follow_in_optimizer(runner.optim_wrapper.optimizer,
                                        records)
                self._rewrap(runner)
                print_log('AtomNAS: net shrunk to the checkpoint\'s spec '
                          f'({self._count(spec) / 1e6:.2f}M '
                          'MACs) before loading its weights',
                          logger='current')
        search = checkpoint.get('atomnas_search')
        if search is not None and runner._resume:
            self.alpha_hat = {
                tuple(int(x) for x in key.split('.')): v.float()
                for key, v in search['alpha_hat'].items()
            }
            self.initial_macs = search.get('initial_macs')

    # ------------------------------------------------------------ the end
    def after_train(self, runner) -> None:
        backbone = self._net(runner)
        spec = backbone.arch_spec
        ema_hook = find_ema_hook(runner)
        source = ema_hook.ema_model.module if ema_hook is not None \
            else unwrap(runner.model)
        deployed = copy.deepcopy(source)
        if self.deploy_recalib_batches > 0:
            print_log('AtomNAS: BN recalibration of the deployable model',
                      logger='current')
            recalibrate_bn(deployed, runner.train_dataloader,
                           self.deploy_recalib_batches)
        if not is_main_process():
            return
        spec.dump(osp.join(runner.work_dir, 'searched_arch.json'))
        path = osp.join(runner.work_dir, 'deploy.pth')
        torch.save(dict(state_dict=deployed.state_dict(),
                        meta={SPEC_META_KEY: spec.to_dict(),
                              'ema': ema_hook is not None,
                              'epoch': runner.epoch, 'iter': runner.iter}),
                   path + '.tmp')
        os.replace(path + '.tmp', path)
        macs = self._count(spec)
        print_log(f'AtomNAS: searched net {macs / 1e6:.2f}M MACs (from '
                  f'{(self.initial_macs or macs) / 1e6:.2f}M); spec '
                  f'{osp.join(runner.work_dir, "searched_arch.json")}, '
                  f'deployable checkpoint {path}', logger='current')
