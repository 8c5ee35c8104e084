"""Dynamic network shrinkage: physically remove dead atoms during training.

The hook orchestrates; the parts live in :mod:`atomnas_mm.engine.search`:
importance tracking (``ImportanceTracker``), the decision (``dead_masks``,
``plan_removal``: pure functions), the transaction (``reshape_search``) and
the deployable checkpoint (``recalibrated_copy``,
``save_deploy_checkpoint``). The cost measure and a budget's target come
from the penalty wrapper (``AtomNASOptimWrapper``), which owns them.
"""
import json
import os
import os.path as osp
from typing import Dict, Optional

import torch
from mmengine.dist import broadcast, get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log

from ...models.arch.cost import _size
from ...models.arch.cost_model import build_cost_model
from ...models.arch.divisor import check_divisor, first_not_divisible
from ...models.checkpoint import (SPEC_META_KEY, check_weights_match_spec,
                                  checkpoint_spec_or_none)
from ...registry import HOOKS
from ...utils.seams import accumulation_of, is_resuming
from ..resume import latest_intact_checkpoint
from ..optimizers.l1_penalty import L1PenaltyMixin
from ..search import (BudgetError, ImportanceTracker, current_alpha,
                      dead_masks, plan_removal, recalibrated_copy,
                      reshape_search, reshape_to_checkpoint,
                      save_deploy_checkpoint)
from ..search.policy import Key
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
    ``threshold``; once the dead atoms cost ``delta`` or more (in the
    search's cost measure) they are removed, as one transaction, from the model, mmengine's EMA copy, the
    optimizer's state and the alpha_hat buffers, and a DDP wrapper is
    rebuilt. The removed atoms' constant output is folded into the next BN
    (a residual block left without atoms becomes the identity plus that
    constant), so the eval-mode output does not change. Each new spec is
    written to ``<work_dir>/arch/``.

    The cost measure (MACs, params, latency) and a budget come from the
    runner's :class:`AtomNASOptimWrapper` (``penalty=dict(cost=...,
    target=...)``), without one MACs and no target. With a target, removal
    never goes below it by more than one group of atoms (the least
    important dead atoms go first), and whatever is left above it at the
    wrapper's ``target_by`` is removed at once, least important first
    (``max(|alpha|, |alpha_hat|)``: not function-preserving, logged); then
    ``train/cost_target``, ``train/cost_gap`` (cost / target - 1) and
    ``train/cost_plan`` are logged every iteration, and ``train/cost`` too
    when the measure is not MACs. ``<work_dir>/budget.json`` records them.

    With ``channel_divisor`` d, every kernel's atom count is 0 or a
    multiple of d after every removal: a kernel rounds up by keeping the
    strongest of the atoms that would have died (their gammas are near 0:
    the function barely moves, and the fold stays exact for those removed).

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
        delta: Dead cost needed before a removal happens, in the search's
            cost measure (MACs by default; ms with ``cost='latency'``).
        interval: Check every ``interval`` epochs (optimizer steps when
            ``by_epoch`` is False).
        by_epoch: Check at epoch ends (the original) or every iterations.
        input_size: Input (H, W) or side at which MACs are counted. Default:
            the penalty's ``input_size``, else 224 (given and different from
            the penalty's: refused).
        num_classes: Classifier width counted in the logged MACs. Default:
            the penalty's, else 1000.
        channel_divisor: Every kernel keeps 0 or a multiple of it atoms (1:
            any count). The supernet's counts must be multiples of it.
        deploy_recalib_batches: Training batches for the BN recalibration of
            ``deploy.pth``. None (default): the ``BNRecalibrationHook``'s
            ``num_batches`` (one setting for both), or 0 without one.
    """

    priority = 'HIGH'  # before EMAHook, so its copy is reshaped before load

    def __init__(self, momentum: float = 0.9999, threshold: float = 1e-3,
                 delta: float = 1e6, interval: int = 1, by_epoch: bool = True,
                 input_size=None, num_classes: Optional[int] = None,
                 channel_divisor: int = 1,
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
        self.divisor = check_divisor(channel_divisor)
        self.tracker = ImportanceTracker(momentum)
        self.initial_macs: Optional[int] = None
        self.macs: Optional[int] = None
        self.cost: Optional[float] = None  # in the cost model's unit
        self.cost_model = None
        self.budget = None    # the wrapper's BudgetController, if a target
        self._wrapper = None  # the penalty wrapper, if any
        self._backbone = None
        self._pending = False  # an epoch-end check waits for a step
        self._stepped = True  # the last iteration stepped the optimizer

    @property
    def alpha_hat(self):
        """Key (block, kernel) -> alpha_hat of that kernel's atoms."""
        return self.tracker.alpha_hat

    def _count(self, spec) -> int:
        if self.cost_model is None:  # loaded before any run started
            self.cost_model = build_cost_model(
                'macs', self.input_size or 224,
                1000 if self.num_classes is None else self.num_classes)
        return self.cost_model.macs(spec)

    def _measure(self) -> str:
        return self.cost_model.measure

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
        spec = self._net(runner).arch_spec
        wrapper = getattr(runner, 'optim_wrapper', None)
        if isinstance(wrapper, L1PenaltyMixin) and \
                wrapper.cost_model is not None:
            self._use_wrapper(wrapper)
        else:
            self.cost_model = build_cost_model(
                'macs', self.input_size or 224,
                1000 if self.num_classes is None else self.num_classes)
        cm = self.cost_model
        if cm.measure != 'macs' and self.delta >= cm.total(spec):
            raise BudgetError(
                f'DynamicShrinkHook.delta={self.delta:g} is in {cm.unit} '
                f'(cost={cm.cost!r}) and not below the supernet\'s whole '
                f'cost {cm.format(cm.total(spec))}: set delta in {cm.unit} '
                f'(e.g. {cm.total(spec) / 1000:.3g})')
        if self.budget is not None:
            least = cm.minimum(spec, self.divisor)
            if self.budget.target < least:
                key = cm.measure
                raise BudgetError(
                    f'penalty.target.{key}: {cm.format(self.budget.target)} '
                    f'is below the least a search can reach with '
                    f'channel_divisor={self.divisor}, {cm.format(least)} '
                    '(fixed parts plus the atoms each block without '
                    'residual keeps)')

    def _use_wrapper(self, wrapper) -> None:
        """Cost measure and budget from the penalty wrapper; this hook's
        own input size and classes, when given, must agree with it."""
        cm = wrapper.cost_model
        mine = dict(input_size=None if self.input_size is None else
                    tuple(_size(self.input_size)),
                    num_classes=self.num_classes)
        theirs = dict(input_size=tuple(cm.input_size),
                      num_classes=cm.num_classes)
        for name, value in mine.items():
            if value is not None and value != theirs[name]:
                raise BudgetError(
                    f'DynamicShrinkHook.{name}={value} but the penalty counts '
                    f'at {name}={theirs[name]} (optim_wrapper.penalty.'
                    f'{name}): set them equal, or leave the hook\'s unset')
        self.cost_model = cm
        self.budget = wrapper.budget
        self._wrapper = wrapper
        wrapper.bind_search(self.threshold)

    def before_train(self, runner) -> None:
        backbone = self._net(runner)
        spec = backbone.arch_spec
        self.tracker.start(backbone)
        self.macs = self._count(spec)
        self.cost = self.cost_model.total(spec)
        if self.initial_macs is None:
            self.initial_macs = self.macs
        if self.divisor > 1:
            bad = first_not_divisible(spec, self.divisor)
            if bad is not None:
                raise BudgetError(
                    f'DynamicShrinkHook.channel_divisor={self.divisor}: '
                    f'{bad}, not a multiple of {self.divisor} (start from a '
                    'net whose counts are: tools/analysis_tools/'
                    f'round_arch.py SPEC --divisor {self.divisor})')
        if self.budget is not None:
            self._wrapper.check_schedule()
            self._start_budget_log(runner)

    def _start_budget_log(self, runner) -> None:
        cm, b = self.cost_model, self.budget
        by = self._wrapper.target_iter()
        print_log(f'AtomNAS budget: {cm.describe()}; target '
                  f'{cm.format(b.target)} by iter {by} of {runner.max_iters}'
                  f' (supernet {cm.format(b.initial)}, now '
                  f'{cm.format(self.cost)}), channel divisor {self.divisor}',
                  logger='current')
        if not is_main_process():
            return
        os.makedirs(runner.work_dir, exist_ok=True)
        record = dict(measure=cm.measure, unit=cm.unit, cost=cm.cost,
                      target=b.target, initial=b.initial,
                      fixed=cm.fixed(self._net(runner).arch_spec),
                      target_by=self._wrapper.penalty_cfg['target_by'],
                      target_iter=by, max_iters=runner.max_iters,
                      channel_divisor=self.divisor)
        path = osp.join(runner.work_dir, 'budget.json')
        with open(f'{path}.tmp', 'w') as f:
            json.dump(record, f, indent=1)
        os.replace(f'{path}.tmp', path)

    # ------------------------------------------------------------ training
    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        self._log_costs(runner)
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
        if self.budget is not None and not self.budget.reached(self.cost) \
                and runner.iter + 1 >= self._wrapper.target_iter():
            self.force_to_target(runner)

    def _log_costs(self, runner) -> None:
        hub = runner.message_hub
        hub.update_scalar('train/macs', float(self.macs))
        if self._measure() != 'macs':
            hub.update_scalar('train/cost', float(self.cost))
        if self.budget is not None:
            w = self._wrapper
            hub.update_scalar('train/cost_target', self.budget.target)
            hub.update_scalar('train/cost_gap', self.budget.gap(self.cost))
            hub.update_scalar('train/cost_plan', self.budget.plan(
                runner.iter, w.ramp_iters(), w.target_iter()))

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
        return self._from_rank0(masks)

    @staticmethod
    def _restart_hint(runner) -> str:
        path, _ = latest_intact_checkpoint(runner.work_dir)
        if path is None:
            return (f'start again (no checkpoint in {runner.work_dir} yet)')
        return f'resume from {path} (--resume {path})'

    @staticmethod
    def _from_rank0(values: Dict[Key, torch.Tensor]
                    ) -> Dict[Key, torch.Tensor]:
        """Rank 0's values (float or bool masks) on every rank, each with its
        own dtype and device, in one broadcast: every rank then decides and
        plans the same removal even if its floats differ in the last bit."""
        if get_world_size() <= 1 or not values:
            return values
        keys = list(values)
        flat = torch.cat([values[k].float().cpu() for k in keys])
        broadcast(flat, 0)
        out, start = {}, 0
        for k in keys:
            n = len(values[k])
            out[k] = flat[start:start + n].to(values[k].dtype).to(
                values[k].device)
            start += n
        return out

    def plan(self, runner, masks):
        """The removal for ``masks`` (see :func:`plan_removal`), or None:
        costs in the search's measure, the divisor, and with a target the
        cost still allowed to go."""
        spec = self._net(runner).arch_spec
        importance = self._from_rank0(
            {k: v.abs() for k, v in self.alpha_hat.items()})
        budget = None if self.budget is None else \
            self.budget.remaining(self.cost)
        return plan_removal(spec, masks, importance,
                            self.cost_model.atom_costs(spec), self.delta,
                            self.divisor, budget)

    # ------------------------------------------------------------ transaction
    def shrink(self, runner, done_iters: Optional[int] = None) -> bool:
        """Remove dead atoms if they cost ``delta``. Returns whether
        anything was removed.

        Args:
            done_iters: Iterations done (mmengine counts ``runner.iter`` up
                after the iteration's hooks; default: during one).
        """
        if self.budget is not None and self.budget.reached(self.cost):
            return False  # at the target: nothing more goes
        if done_iters is None:
            done_iters = runner.iter + 1
        removal = self.plan(runner, self.dead_atoms(runner))
        if removal is None:
            return False
        for note in removal.notes:
            print_log(f'AtomNAS shrink: {note}', logger='current')
        # Counted as mmengine's log counts: epochs and iterations from 1.
        where = f'epoch {runner.epoch + 1}' if self.by_epoch else ''
        self._apply(runner, removal,
                    f'AtomNAS shrink after {where + ", " if where else ""}'
                    f'iter {done_iters}: removed {removal.atoms} atoms',
                    done_iters)
        return True

    def _apply(self, runner, removal, what: str,
               done_iters: Optional[int] = None) -> None:
        """The transaction, the new costs, a log line and the spec file."""
        before, before_cost = self.macs, self.cost
        backbone = self._net(runner)
        reshape_search(runner, backbone, removal.keep, self.tracker)
        spec = backbone.arch_spec
        bad = first_not_divisible(spec, self.divisor) \
            if self.divisor > 1 else None
        if bad is not None:  # plan_removal guarantees it; never silently
            raise RuntimeError(f'AtomNAS shrink: {bad} after a removal, not '
                               f'a multiple of {self.divisor}')
        self.macs = self._count(spec)
        self.cost = self.cost_model.total(spec)
        line = f'{what}; {before / 1e6:.2f}M -> {self.macs / 1e6:.2f}M MACs'
        cm = self.cost_model
        if cm.measure != 'macs':
            line += f', {cm.format(before_cost)} -> {cm.format(self.cost)}'
        if self.budget is not None:
            line += (f' (target {cm.format(self.budget.target)}, gap '
                     f'{100 * self.budget.gap(self.cost):+.2f}%)')
        print_log(line, logger='current')
        if done_iters is None:
            done_iters = runner.iter + 1
        self._write_spec(runner, f'iter_{done_iters}.json')

    @torch.no_grad()
    def force_to_target(self, runner) -> bool:
        """At ``target_by`` with the net still above the target: remove the
        least important atoms (``max(|alpha|, |alpha_hat|)``, the quantity
        the dead rule thresholds) down to the target, with the divisor and
        the keep-one rule. Not function-preserving when an atom above the
        threshold goes; the rest of training fine-tunes. Returns whether
        anything was removed."""
        backbone = self._net(runner)
        removed_any = False
        for _ in range(8):  # latency costs are marginal: re-plan if short
            if self.budget.reached(self.cost):
                break
            spec = backbone.arch_spec
            alpha = current_alpha(backbone)
            strength = self._from_rank0({
                key: torch.maximum(a.abs(), self.alpha_hat[key].abs().to(
                    a.device)) for key, a in alpha.items()})
            every = {key: torch.ones(len(v), dtype=torch.bool)
                     for key, v in strength.items()}
            removal = plan_removal(spec, every, strength,
                                   self.cost_model.atom_costs(spec), 0.0,
                                   self.divisor,
                                   self.budget.remaining(self.cost))
            if removal is None:
                break
            top = 0.0  # the strongest atom removed
            for i, kept in removal.keep.items():
                for k, idx in kept.items():
                    st = strength[(i, k)]
                    gone = torch.ones(len(st), dtype=torch.bool,
                                      device=st.device)
                    gone[idx.to(st.device)] = False
                    if gone.any():
                        top = max(top, float(st[gone].max()))
            self._apply(runner, removal,
                        f'AtomNAS budget: target not reached by iter '
                        f'{runner.iter + 1} (target_by); removed the '
                        f'{removal.atoms} least important atoms (largest '
                        f'max(|alpha|, |alpha_hat|) removed {top:.3g}, '
                        f'threshold {self.threshold:g}: not '
                        'function-preserving), fine-tuning from here')
            removed_any = True
        if not self.budget.reached(self.cost):
            print_log(f'AtomNAS budget: could not reach the target '
                      f'{self.cost_model.format(self.budget.target)}; the '
                      f'net stays at {self.cost_model.format(self.cost)}',
                      logger='current', level=30)
        return removed_any

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
        target = ''
        if self.budget is not None:
            cm = self.cost_model
            target = (f', {cm.format(self.cost)} against a target of '
                      f'{cm.format(self.budget.target)} '
                      f'({100 * self.budget.gap(self.cost):+.2f}%)')
        print_log(f'AtomNAS: searched net {macs / 1e6:.2f}M MACs (from '
                  f'{(self.initial_macs or macs) / 1e6:.2f}M){target}; spec '
                  f'{osp.join(runner.work_dir, "searched_arch.json")}, '
                  f'deployable checkpoint {path}', logger='current')
