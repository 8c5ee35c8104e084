"""Dynamic network shrinkage: physically remove dead atoms during training.

The hook orchestrates and owns the search's state; the parts live in
:mod:`atomnas_mm.engine.search`: the state (:class:`SearchState`: costs,
lambda, schedule, importance, budget), the decision (``dead_masks``,
``plan_removal``: pure functions), the transaction (``reshape_search``)
and the deployable checkpoint (``recalibrated_copy``,
``save_deploy_checkpoint``).
"""
import json
import os
import os.path as osp
from typing import Dict, Optional

import torch
from mmengine.dist import broadcast, get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.optim import BaseOptimWrapper

from ...models.arch.cost import _size
from ...models.arch.divisor import check_divisor, first_not_divisible
from ...models.arch.spec import Key
from ...models.checkpoint import (SPEC_META_KEY, check_weights_match_spec,
                                  checkpoint_spec_or_none)
from ...registry import HOOKS
from ...utils.seams import (accumulation_of, is_resuming,
                             use_safe_checkpoint_loading)
from ..optimizers.l1_penalty import L1PenaltyMixin
from ..resume import latest_intact_checkpoint
from ..search import (BudgetError, EMAImportance, ImportanceTracker,
                      SearchState, block_relative, current_alpha,
                      dead_masks, mask_cost, parse_penalty, plan_removal,
                      recalibrated_copy, reshape_search, reshape_to_checkpoint,
                      save_deploy_checkpoint)
from ..utils import (ema_backbone, find_backbone, find_ema_hook, find_hook,
                     optimizer_stepped, unwrap)

IMPORTANCE = ('ema', 'own')
PLAN_CHECKS = 50  # a budget's descent is followed in about as many steps
GATES = ('alpha_hat', 'both')


@HOOKS.register_module()
class DynamicShrinkHook(Hook):
    """Track each atom's importance and remove dead atoms physically.

    An atom is dead when ``|alpha|`` (the gamma of its depthwise BN) and
    ``|alpha_hat|`` (its moving average) are both at or below
    ``threshold``. Every ``interval`` epochs (or optimizer steps), once the
    atoms dead by ``alpha_hat`` alone cost ``delta`` or more (in the
    search's cost measure), the atoms dead by both are removed, as one
    transaction, from the model, the EMA copy, the optimizer's state and
    the search state, and a DDP wrapper is rebuilt. After the last epoch
    the atoms dead by ``alpha_hat`` alone go, whatever they cost. The
    removed atoms' constant output is folded into the next BN (a residual
    block left without atoms becomes the identity plus that constant), so
    the eval-mode output does not change. Each new spec is written to
    ``<work_dir>/arch/``. These are the rules of the authors' code; the
    search guide lists them with this project's options.

    The hook builds and owns the :class:`SearchState` (``self.state``)
    from the penalty wrapper's ``penalty`` options and its own arguments,
    binds it to the wrapper, and saves it in every checkpoint
    (``checkpoint['atomnas_search']``) with the spec (``meta['atomnas_spec']``).
    Loading a checkpoint (resume or ``load_from``) first shrinks the model,
    its EMA copy and the optimizer to the checkpoint's spec. At the end of
    training the work dir holds ``searched_arch.json`` and ``deploy.pth``
    (EMA weights if EMA is on, BN recalibrated), which loads into a plain
    ``AtomNASNet`` built from that spec.

    With a ``target`` (``optim_wrapper.penalty.target``) removal never goes
    below it by more than one group of atoms (the least important dead
    atoms go first), and whatever is left above it at ``target_by`` is
    removed at once, least important first (``max(|alpha|,
    |alpha_hat|)``: not function-preserving, logged).

    With ``channel_divisor`` d, every kernel's atom count is 0 or a
    multiple of d after every removal: a kernel rounds up by keeping the
    strongest of the atoms that would have died.

    Under gradient accumulation everything advances per optimizer step,
    and a removal happens only right after a step (an epoch-end check
    inside an accumulation window waits for the step that closes it):
    pending gradients of parameters the surgery replaces would otherwise
    be lost.

    Args:
        threshold: Importance at or below which an atom is dead (> 0).
        delta: Cost of the atoms dead by ``alpha_hat`` needed before a
            removal happens, in the search's cost measure (MACs by default;
            ms with ``cost='latency'``).
        interval: Check every ``interval`` epochs (optimizer steps when
            ``by_epoch`` is False).
        by_epoch: Check at epoch ends (the original) or every ``interval``
            optimizer steps (then ``alpha_hat`` is read before that step's
            EMA update).
        importance: Where ``alpha_hat`` comes from: ``'ema'`` (default, the
            authors'): the gammas of the EMA copy (``atomnas_mm.EMAHook``
            must be configured); ``'own'``: an average of this hook's, of
            decay ``momentum``.
        momentum: alpha_hat's decay with ``importance='own'`` (default
            0.9999); refused with ``'ema'`` (there the EMA hook's decay
            applies).
        momentum_warmup: With ``importance='own'``, warm the decay up as
            the authors' EMA does (``min(momentum, (1 + n) / (10 + n))``);
            False: the fixed decay from the first step.
        gate: What must cost ``delta`` before a removal: the atoms dead by
            ``'alpha_hat'`` alone (the authors') or by ``'both'`` (what is
            removed).
        final_removal: After the last epoch, remove the atoms dead by
            ``alpha_hat`` alone, whatever they cost (the authors').
        input_size: Input (H, W) or side at which costs are counted.
            Default: the penalty's ``input_size``, else 224 (given and
            different from the penalty's: refused).
        num_classes: Classifier width counted in the logged MACs. Default:
            the penalty's, else the model head's.
        channel_divisor: Every kernel keeps 0 or a multiple of it atoms (1:
            any count). The supernet's counts must be multiples of it.
        deploy_recalib_batches: Training batches for the BN recalibration of
            ``deploy.pth``. None (default): the ``BNRecalibrationHook``'s
            ``num_batches``, or 0 without one.
    """

    priority = 'HIGH'  # before EMAHook, so its copy is reshaped before load

    def __init__(self, threshold: float = 1e-3, delta: float = 1e6,
                 interval: int = 1, by_epoch: bool = True,
                 importance: str = 'ema', momentum: Optional[float] = None,
                 momentum_warmup: bool = True, gate: str = 'alpha_hat',
                 final_removal: bool = True, input_size=None,
                 num_classes: Optional[int] = None, channel_divisor: int = 1,
                 deploy_recalib_batches: Optional[int] = None) -> None:
        name = 'DynamicShrinkHook'
        if importance not in IMPORTANCE:
            raise ValueError(f'{name}: importance must be one of '
                             f'{IMPORTANCE}, got {importance!r}')
        if importance == 'ema' and momentum is not None:
            raise ValueError(
                f"{name}: momentum={momentum} with importance='ema', where "
                'alpha_hat is the EMA copy\'s gamma (the decay of '
                "atomnas_mm.EMAHook): drop momentum, or set importance='own'"
                ' for an average of its own')
        momentum = 0.9999 if momentum is None else momentum
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f'{name}: momentum (beta) must be in [0, 1), '
                             f'got {momentum}')
        if not threshold > 0:
            raise ValueError(f'{name}: threshold must be > 0, got '
                             f'{threshold}')
        if delta < 0:
            raise ValueError(f'{name}: delta must be >= 0, got {delta}')
        if interval < 1:
            raise ValueError(f'{name}: interval must be >= 1, got '
                             f'{interval}')
        if gate not in GATES:
            raise ValueError(f'{name}: gate must be one of {GATES}, got '
                             f'{gate!r}')
        if deploy_recalib_batches is not None and deploy_recalib_batches < 0:
            raise ValueError(f'{name}: deploy_recalib_batches must be >= 0, '
                             f'got {deploy_recalib_batches}')
        self.threshold = threshold
        self.delta = delta
        self.interval = interval
        self.by_epoch = by_epoch
        self.importance = importance
        self.momentum = momentum
        self.momentum_warmup = momentum_warmup
        self.gate = gate
        self.final_removal = final_removal
        self.input_size = input_size
        self.num_classes = num_classes
        self.deploy_recalib_batches = deploy_recalib_batches
        self.divisor = check_divisor(channel_divisor)
        self.state: Optional[SearchState] = None
        self._backbone = None
        self._loaded_search: Optional[dict] = None
        self._pending = False  # an epoch-end check waits for a step
        self._warned_alive = False
        self._plan_every = 1
        # An atom removed by rank above this importance was alive.
        self.alive_level = 0.1
        self._stepped = True  # the last iteration stepped the optimizer

    # ------------------------------------------------------------ queries
    @property
    def alpha_hat(self) -> Dict[Key, torch.Tensor]:
        """Key (block, kernel) -> alpha_hat of that kernel's atoms."""
        return self.state.importance.alpha_hat

    @property
    def cost(self) -> float:
        """The net's cost now, in the search's unit."""
        return self.state.cost

    def _net(self, runner):
        """The searched backbone. Found once (walking every module each
        iteration would cost in the hot path); surgery and DDP re-wrapping
        keep the same backbone object."""
        if self._backbone is None:
            self._backbone = find_backbone(runner.model)
        return self._backbone

    def _listeners(self):
        return [self.state] if self.state is not None else []

    # ------------------------------------------------------------ set-up
    def before_run(self, runner) -> None:
        """Build the search state (training only: the optimizer wrapper is
        built then) and bind it to the penalty wrapper; refuse, in one
        line, what cannot be searched."""
        use_safe_checkpoint_loading()  # before the runner loads anything
        backbone = self._net(runner)
        wrapper = runner.optim_wrapper
        if not isinstance(wrapper, BaseOptimWrapper):
            return  # test or val: only checkpoints are reshaped
        head = getattr(unwrap(runner.model), 'head', None)
        classes = getattr(head, 'num_classes', None) or 1000
        penalty = dict(wrapper.penalty_cfg) \
            if isinstance(wrapper, L1PenaltyMixin) else parse_penalty(
                dict(input_size=self.input_size or 224,
                     num_classes=self.num_classes))
        penalty['num_classes'] = penalty['num_classes'] or classes
        self._check_agrees(penalty)
        if self.importance == 'ema':
            ema_hook = find_ema_hook(runner)
            if ema_hook is None:
                raise ValueError(
                    "DynamicShrinkHook: importance='ema' reads alpha_hat "
                    "from the EMA copy: add dict(type='atomnas_mm.EMAHook', "
                    "...) to custom_hooks, or set importance='own'")
            importance = EMAImportance(lambda: ema_backbone(ema_hook))
        else:
            importance = ImportanceTracker(self.momentum, self.momentum_warmup)
        self.state = SearchState(backbone, penalty, classes, self.threshold,
                                 importance)
        if isinstance(wrapper, L1PenaltyMixin):
            wrapper.bind_search(self.state)
        self._check_costs(backbone.arch_spec)

    def _check_agrees(self, penalty: dict) -> None:
        """This hook's own input size and classes, when given, must agree
        with the penalty's."""
        mine = dict(input_size=None if self.input_size is None else
                    tuple(_size(self.input_size)),
                    num_classes=self.num_classes)
        theirs = dict(input_size=tuple(_size(penalty['input_size'])),
                      num_classes=penalty['num_classes'])
        for name, value in mine.items():
            if value is not None and value != theirs[name]:
                raise BudgetError(
                    f'DynamicShrinkHook.{name}={value} but the penalty counts '
                    f'at {name}={theirs[name]} (optim_wrapper.penalty.'
                    f'{name}): set them equal, or leave the hook\'s unset')

    def _check_costs(self, spec) -> None:
        cm, budget = self.state.cost_model, self.state.budget
        if cm.measure != 'macs' and self.delta >= cm.total(spec):
            raise BudgetError(
                f'DynamicShrinkHook.delta={self.delta:g} is in {cm.unit} '
                f'(cost={cm.cost!r}) and not below the supernet\'s whole '
                f'cost {cm.format(cm.total(spec))}: set delta in {cm.unit} '
                f'(e.g. {cm.total(spec) / 1000:.3g})')
        if budget is not None:
            least = cm.minimum(spec, self.divisor)
            if budget.target < least:
                raise BudgetError(
                    f'penalty.target.{cm.measure}: {cm.format(budget.target)}'
                    f' is below the least a search can reach with '
                    f'channel_divisor={self.divisor}, {cm.format(least)} '
                    '(fixed parts plus the atoms each block without '
                    'residual keeps)')

    def before_train(self, runner) -> None:
        backbone = self._net(runner)
        state = self.state
        state.set_schedule(runner.max_iters, runner.max_epochs,
                           accumulation_of(runner.optim_wrapper))
        if self._loaded_search is not None:
            state.load_state_dict(self._loaded_search)
            self._loaded_search = None
        state.importance.start(backbone)
        if self.divisor > 1:
            bad = first_not_divisible(backbone.arch_spec, self.divisor)
            if bad is not None:
                raise BudgetError(
                    f'DynamicShrinkHook.channel_divisor={self.divisor}: '
                    f'{bad}, not a multiple of {self.divisor} (start from a '
                    'net whose counts are: tools/analysis_tools/'
                    f'round_arch.py SPEC --divisor {self.divisor})')
        if state.budget is not None:
            state.check_schedule()
            start = state.ramp_steps
            descent = state.budget.plan_end(start, state.target_step) - start
            # The plan is followed in about PLAN_CHECKS small steps.
            self._plan_every = max(1, int(descent // PLAN_CHECKS))
            self._start_budget_log(runner)
            self._warn_if_short(runner)

    def _warn_if_short(self, runner) -> None:
        """One line when the planned descent is predictably too short for
        the penalty: RMSprop moves a gamma by at most about lr / (1 -
        momentum) per step, so a gamma needs ``1 / that`` steps to fall
        from 1 to 0; a descent shorter than ``4x`` that removes live atoms
        by rank (measured on the digits demo)."""
        state = self.state
        group = runner.optim_wrapper.param_groups[0]
        if 'square_avg_init' not in group and 'alpha' not in group:
            return  # not an RMSprop: its step is not bounded by lr
        lr = group.get('initial_lr', group['lr'])  # not a warm-up's start
        speed = lr / max(1e-12, 1 - group.get('momentum', 0.0))
        need = 4.0 / max(speed, 1e-12)
        start = state.ramp_steps
        descent = state.budget.plan_end(start, state.target_step) - start
        if descent < need:
            k = state.accumulation
            print_log(
                f'AtomNAS budget: the planned descent is {descent:.0f} '
                f'optimizer steps (iter {start * k} to '
                f'{int(start + descent) * k}), and at lr {lr:g} a '
                f'gamma needs about {need / 4:.0f} to fall from 1 to 0 (need '
                f'{need:.0f}): atoms will go by rank before the penalty '
                'makes them dead; give the search more steps (a later '
                'penalty.target_by, more epochs, --auto-scale-lr with '
                'accumulation)', logger='current', level=30)

    def after_val_epoch(self, runner, metrics=None) -> None:
        state = self.state
        if state is None or state.budget is None or not metrics:
            return
        cm = state.cost_model
        shown = ', '.join(f'{k} {v:.2f}' for k, v in metrics.items()
                          if isinstance(v, (int, float)))
        print_log(f'AtomNAS budget: validation at iter {runner.iter} with '
                  f'the net at {cm.format(state.cost)} (plan '
                  f'{cm.format(state.budget.plan(state.step + 1, state.ramp_steps, state.target_step))}'
                  f', target {cm.format(state.budget.target)}): {shown}',
                  logger='current')

    def _start_budget_log(self, runner) -> None:
        state = self.state
        cm, b = state.cost_model, state.budget
        by = state.target_step * state.accumulation
        print_log(f'AtomNAS budget: {cm.describe()}; target '
                  f'{cm.format(b.target)} by iter {by} of {runner.max_iters}'
                  f' (supernet {cm.format(b.initial)}, now '
                  f'{cm.format(state.cost)}), channel divisor {self.divisor}',
                  logger='current')
        if not is_main_process():
            return
        os.makedirs(runner.work_dir, exist_ok=True)
        record = dict(measure=cm.measure, unit=cm.unit, cost=cm.cost,
                      target=b.target, initial=b.initial,
                      fixed=cm.fixed(self._net(runner).arch_spec),
                      target_by=state.cfg['target_by'], target_iter=by,
                      max_iters=runner.max_iters,
                      channel_divisor=self.divisor)
        path = osp.join(runner.work_dir, 'budget.json')
        with open(f'{path}.tmp', 'w') as f:
            json.dump(record, f, indent=1)
        os.replace(f'{path}.tmp', path)

    # ------------------------------------------------------------ training
    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.state.begin_iteration(runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        self._log_costs(runner)
        self._stepped = optimizer_stepped(runner)
        if not self._stepped:
            return  # weights unchanged: nothing to average or decide
        state = self.state
        state.importance.update(self._net(runner))
        if self._pending:
            self._pending = False
            self.shrink(runner)
        elif not self.by_epoch and (state.step + 1) % self.interval == 0:
            self.shrink(runner)
        if state.budget is not None and not state.budget.done:
            if state.step + 1 >= state.target_step:
                self.remove_ranked(runner, state.budget.target, 'target_by')
            elif (state.step + 1) % self._plan_every == 0:
                self.remove_ranked(runner, state.planned_cost(), 'the plan')

    def _log_costs(self, runner) -> None:
        state = self.state
        hub = runner.message_hub
        hub.update_scalar('train/macs', float(state.macs))
        if state.cost_model.measure != 'macs':
            hub.update_scalar('train/cost', float(state.cost))
        if state.budget is not None:
            b = state.budget
            hub.update_scalar('train/cost_target', b.target)
            hub.update_scalar('train/cost_gap', b.gap(state.cost))
            hub.update_scalar('train/cost_plan', b.plan(
                state.step, state.ramp_steps, state.target_step))

    def after_train_epoch(self, runner) -> None:
        last = runner.epoch + 1 >= runner.max_epochs
        if self.by_epoch and self.every_n_epochs(runner, self.interval):
            if self._stepped:
                self.shrink(runner, done_iters=runner.iter)
            else:
                self._pending = True  # inside an accumulation window
        if last and self.final_removal:
            self.shrink(runner, done_iters=runner.iter, final=True)

    # ------------------------------------------------------------ decision
    @torch.no_grad()
    def importances(self, runner):
        """(alpha, alpha_hat), rank 0's on every rank (every rank then
        decides and plans the same removal even if its floats differ in
        the last bit)."""
        alpha = current_alpha(self._net(runner))
        alpha_hat = {k: v.to(alpha[k]) for k, v in self.alpha_hat.items()}
        both = self._from_rank0({**{('a', ) + k: v for k, v in alpha.items()},
                                 **{('h', ) + k: v
                                    for k, v in alpha_hat.items()}})
        return ({k[1:]: v for k, v in both.items() if k[0] == 'a'},
                {k[1:]: v for k, v in both.items() if k[0] == 'h'})

    def dead_atoms(self, runner, alpha=None, alpha_hat=None,
                   by: str = 'both'):
        """(block, kernel) -> bool mask of the atoms dead ``by`` both values
        or ``alpha_hat`` alone (values default to :meth:`importances`).

        Raises:
            FloatingPointError: an importance factor is NaN or inf.
        """
        if alpha is None:
            alpha, alpha_hat = self.importances(runner)
        try:
            return dead_masks(alpha, alpha_hat, self.threshold, by)
        except FloatingPointError as e:
            raise FloatingPointError(
                f'AtomNAS shrink: {e}; nothing was removed. Training '
                f'diverged: lower the lr or lambda, then '
                f'{self._restart_hint(runner)}') from None

    @staticmethod
    def _restart_hint(runner) -> str:
        path, _ = latest_intact_checkpoint(runner.work_dir)
        if path is None:
            return (f'start again (no checkpoint in {runner.work_dir} yet)')
        return f'resume from {path} (--resume {path})'

    @staticmethod
    def _from_rank0(values: Dict) -> Dict:
        """Rank 0's values (float or bool tensors) on every rank, each with
        its own dtype and device, in one float64 broadcast."""
        if get_world_size() <= 1 or not values:
            return values
        keys = list(values)
        flat = torch.cat([values[k].double().cpu().flatten() for k in keys])
        broadcast(flat, 0)
        out, start = {}, 0
        for k in keys:
            n = values[k].numel()
            out[k] = flat[start:start + n].view_as(values[k].cpu()).to(
                values[k].dtype).to(values[k].device)
            start += n
        return out

    def plan(self, runner, masks, importance, gate: Optional[float] = None,
             delta: Optional[float] = None):
        """The removal of ``masks`` (see :func:`plan_removal`), or None:
        costs in the search's measure, the divisor, and with a target the
        cost still allowed to go; ``importance`` orders the atoms."""
        state = self.state
        spec = self._net(runner).arch_spec
        budget = None if state.budget is None else \
            state.budget.remaining(state.cost)
        return plan_removal(spec, masks, importance,
                            state.cost_model.atom_costs(spec),
                            self.delta if delta is None else delta,
                            self.divisor, budget, gate)

    # ------------------------------------------------------------ transaction
    def shrink(self, runner, done_iters: Optional[int] = None,
               final: bool = False) -> bool:
        """Remove the dead atoms if the gate allows it (``final``: the atoms
        dead by alpha_hat, whatever they cost). Returns whether anything
        was removed.

        Args:
            done_iters: Iterations done (mmengine counts ``runner.iter`` up
                after the iteration's hooks; default: during one).
            final: The last epoch's removal.
        """
        state = self.state
        if state.budget is not None and state.budget.reached(state.cost):
            return False  # at the target: nothing more goes
        if done_iters is None:
            done_iters = runner.iter + 1
        alpha, alpha_hat = self.importances(runner)
        hat = self.dead_atoms(runner, alpha, alpha_hat, 'alpha_hat')
        strength = {k: v.abs() for k, v in alpha_hat.items()}
        if final:
            removal = self.plan(runner, hat, strength, delta=0.0)
        else:
            gate = mask_cost(hat, state.cost_model.atom_costs(
                self._net(runner).arch_spec)) \
                if self.gate == 'alpha_hat' else None
            removal = self.plan(runner, self.dead_atoms(
                runner, alpha, alpha_hat), strength, gate)
        if removal is None:
            return False
        for note in removal.notes:
            print_log(f'AtomNAS shrink: {note}', logger='current')
        # Counted as mmengine's log counts: epochs and iterations from 1.
        where = f'epoch {runner.epoch + 1}, ' if self.by_epoch or final \
            else ''
        what = 'final removal (dead by alpha_hat)' if final else 'shrink'
        self._apply(runner, removal,
                    f'AtomNAS {what} after {where}iter {done_iters}: '
                    f'removed {removal.atoms} atoms', done_iters)
        if state.budget is not None:
            state.budget.record(state.step + 1, state.cost, removal.cost)
        return True

    def _apply(self, runner, removal, what: str,
               done_iters: Optional[int] = None) -> None:
        """The transaction, a log line and the spec file."""
        state = self.state
        before, before_cost = state.macs, state.cost
        backbone = self._net(runner)
        reshape_search(runner, backbone, removal.keep, self._listeners())
        spec = backbone.arch_spec
        bad = first_not_divisible(spec, self.divisor) \
            if self.divisor > 1 else None
        if bad is not None:  # plan_removal guarantees it; never silently
            raise RuntimeError(f'AtomNAS shrink: {bad} after a removal, not '
                               f'a multiple of {self.divisor}')
        cm = state.cost_model
        line = f'{what}; {before / 1e6:.2f}M -> {state.macs / 1e6:.2f}M MACs'
        if cm.measure != 'macs':
            line += f', {cm.format(before_cost)} -> {cm.format(state.cost)}'
        if state.budget is not None:
            line += (f' (target {cm.format(state.budget.target)}, gap '
                     f'{100 * state.budget.gap(state.cost):+.2f}%)')
        print_log(line, logger='current')
        if done_iters is None:
            done_iters = runner.iter + 1
        self._write_spec(runner, f'iter_{done_iters}.json')

    @torch.no_grad()
    def remove_ranked(self, runner, down_to: float, why: str,
                      done_iters: Optional[int] = None) -> bool:
        """With the net above ``down_to`` (the plan's cost now, or the
        target at ``target_by``): remove the least important atoms
        (``max(|alpha|, |alpha_hat|)``, the quantity the dead rule
        thresholds, relative to its block's mean unless the plan's
        ``rank`` is ``'global'``) down to it, with the divisor and the
        keep-one rule.
        Not function-preserving when an atom above the threshold goes:
        logged, and warned of once (the penalty has not caught up with the
        plan). Returns whether anything was removed."""
        state = self.state
        budget, cm = state.budget, state.cost_model
        backbone = self._net(runner)
        removed_any = False
        for _ in range(8):  # latency costs are marginal: re-plan if short
            excess = state.cost - max(down_to, budget.target)
            if excess <= 0:
                break
            spec = backbone.arch_spec
            alpha, alpha_hat = self.importances(runner)
            strength = {key: torch.maximum(a.abs(), alpha_hat[key].abs())
                        for key, a in alpha.items()}
            every = {key: torch.ones(len(v), dtype=torch.bool)
                     for key, v in strength.items()}
            order = block_relative(strength) if budget.rank == 'block' \
                else strength
            removal = plan_removal(spec, every, order, cm.atom_costs(spec),
                                   0.0, self.divisor, excess)
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
            if done_iters is None:
                done_iters = runner.iter + 1
            self._apply(runner, removal,
                        f'AtomNAS budget: {why} at iter {done_iters} asks '
                        f'for {cm.format(max(down_to, budget.target))}; '
                        f'removed the {removal.atoms} least important atoms '
                        f'(largest max(|alpha|, |alpha_hat|) {top:.3g}, '
                        f'threshold {self.threshold:g})', done_iters)
            budget.record(state.step + 1, state.cost, removal.cost,
                          ranked=True, strongest=top)
            removed_any = True
            if top > self.alive_level and not self._warned_alive:
                self._warned_alive = True
                print_log(
                    f'AtomNAS budget: {why} removed atoms still alive '
                    f'(importance up to {top:.3g}, threshold '
                    f'{self.threshold:g}): the penalty has not made them '
                    'dead in time, so the net loses function here; give '
                    'the search more steps (a later penalty.target_by, more '
                    'epochs, --auto-scale-lr with accumulation) or a larger '
                    'penalty.weight', logger='current', level=30)
        if why == 'target_by' and not budget.reached(state.cost):
            print_log(f'AtomNAS budget: could not reach the target '
                      f'{cm.format(budget.target)}; the net stays at '
                      f'{cm.format(state.cost)}', logger='current', level=30)
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
        if self.state is not None:
            checkpoint['atomnas_search'] = dict(
                self.state.state_dict(), pending=self._pending)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        spec = checkpoint_spec_or_none(checkpoint, 'the checkpoint')
        if spec is not None:
            for key in ('state_dict', 'ema_state_dict'):
                if isinstance(checkpoint.get(key), dict):
                    check_weights_match_spec(checkpoint[key], spec,
                                             'the checkpoint being loaded')
            if reshape_to_checkpoint(runner, self._net(runner), spec,
                                     listeners=self._listeners()):
                macs = self.state.macs if self.state is not None else None
                print_log('AtomNAS: net shrunk to the checkpoint\'s spec'
                          + (f' ({macs / 1e6:.2f}M MACs)' if macs else '')
                          + ' before loading its weights', logger='current')
        search = checkpoint.get('atomnas_search')
        if search is not None and is_resuming(runner):
            search = dict(search)
            if 'alpha_hat' in search:  # written by version 0.x
                search['importance'] = search.pop('alpha_hat')
            budget = (checkpoint.get('optimizer') or {}).pop(
                'atomnas_budget', None)
            if budget is not None:  # older checkpoints saved it there
                search.setdefault('budget', budget)
            self._pending = bool(search.pop('pending', False))
            self._loaded_search = search  # applied in before_train

    # ------------------------------------------------------------ the end
    def recalib_batches(self, runner) -> int:
        """Batches for the deployable checkpoint's BN recalibration."""
        if self.deploy_recalib_batches is not None:
            return self.deploy_recalib_batches
        from .bn_recalibration_hook import BNRecalibrationHook
        recal = find_hook(runner, BNRecalibrationHook)
        return recal.num_batches if recal is not None else 0

    def after_train(self, runner) -> None:
        state = self.state
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
        target = ''
        if state.budget is not None:
            cm = state.cost_model
            target = (f', {cm.format(state.cost)} against a target of '
                      f'{cm.format(state.budget.target)} '
                      f'({100 * state.budget.gap(state.cost):+.2f}%; '
                      f'{state.budget.summary()})')
        print_log(f'AtomNAS: searched net {state.macs / 1e6:.2f}M MACs (from '
                  f'{state.initial_macs / 1e6:.2f}M){target}; spec '
                  f'{osp.join(runner.work_dir, "searched_arch.json")}, '
                  f'deployable checkpoint {path}', logger='current')
