"""What changes with the total batch: the learning rate, and every constant
that acts once per optimizer step."""
from __future__ import annotations

from typing import List


def effective_batch(cfg, world_size: int) -> int:
    """Images per optimizer step: processes x batch per process x
    ``accumulative_counts``."""
    k = int(cfg.optim_wrapper.get('accumulative_counts', 1) or 1)
    return world_size * int(cfg.train_dataloader.batch_size) * k


def scale_to_batch(cfg, world_size: int) -> List[str]:
    """Apply ``auto_scale_lr`` to the effective batch, in place.

    * lr: linear in the effective batch (mmengine's ``auto_scale_lr``
      counts processes x batch only; its base batch is divided by the
      accumulation so that its ratio is the effective one).
    * The penalty's lambda is a loss weight and stays: its per-step push is
      lr x lambda x cost, so it scales with the lr, like the task loss.
    * Per-step decays keep their horizon in epochs: with r = effective /
      base batch there are 1/r times as many steps per epoch, so the EMA
      decay becomes ``decay ** r`` (mmengine's momentum ``1 - decay``; the
      authors' adjustment to the batch) and the shrink hook's own
      alpha_hat decay (``importance='own'``) ``beta ** r``.
    * ``WarmupExpDecayLR`` warms up from the rate of a fixed batch (the
      authors': 256 images), so its ``start_factor`` becomes
      ``start_factor / r`` (1, no warm-up, once the rate is no higher).

    Does nothing unless ``auto_scale_lr.enable`` is set.

    Returns:
        One line per change, for the log.
    """
    auto = cfg.get('auto_scale_lr')
    if not auto or not auto.get('enable', False):
        return []
    if 'base_batch_size' not in auto:
        raise ValueError('auto_scale_lr: base_batch_size is missing (the '
                         'batch the config\'s lr and decays were set for)')
    base = float(auto['base_batch_size'])
    eff = effective_batch(cfg, world_size)
    ratio = eff / base
    k = int(cfg.optim_wrapper.get('accumulative_counts', 1) or 1)
    notes = [f'effective batch {eff} ({world_size} process(es) x '
             f'{cfg.train_dataloader.batch_size} x accumulation {k}) = '
             f'{ratio:g} x the base {base:g}: lr x {ratio:g}']
    if k > 1:
        auto['base_batch_size'] = base / k  # mmengine multiplies world x bs
    for hook in cfg.get('custom_hooks') or []:
        kind = str(hook.get('type', ''))
        if kind.endswith('EMAHook') and 'momentum' in hook:
            old = hook['momentum']
            hook['momentum'] = 1 - (1 - old) ** ratio
            notes.append(f'{kind}: decay {1 - old:.6g} -> '
                         f'{1 - hook["momentum"]:.6g} per step')
        elif kind.endswith('DynamicShrinkHook') and \
                hook.get('importance', 'ema') == 'own':
            old = hook.get('momentum') or 0.9999
            hook['momentum'] = old ** ratio
            notes.append(f'{kind}: alpha_hat beta {old:.6g} -> '
                         f'{hook["momentum"]:.6g} per step')
    schedulers = cfg.get('param_scheduler') or []
    for sched in schedulers if isinstance(schedulers, list) else [
            schedulers]:
        kind = str(sched.get('type', ''))
        if kind.endswith('WarmupExpDecayLR') and \
                sched.get('start_factor', 1.0) < 1.0:
            old = sched['start_factor']
            sched['start_factor'] = min(1.0, old / ratio)
            notes.append(f'{kind}: warm-up start factor {old:.6g} -> '
                         f'{sched["start_factor"]:.6g} (the same starting '
                         'rate)')
    return notes
