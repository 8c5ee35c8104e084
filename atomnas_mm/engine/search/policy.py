"""Which atoms die: pure functions of importance values and costs.

Nothing here touches a model, a runner or a process group, so every rule is
tested on hand-made tensors. ``Key`` is ``(block index, kernel size)``;
indices are within that kernel's atoms.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import torch

from ...models.arch.spec import ArchSpec
from .importance import Key


def dead_masks(alpha: Mapping[Key, torch.Tensor],
               alpha_hat: Mapping[Key, torch.Tensor],
               threshold: float, by: str = 'both') -> Dict[Key, torch.Tensor]:
    """Which atoms are dead: ``|alpha|`` (the BN gamma now) and
    ``|alpha_hat|`` (its moving average) at or below ``threshold``
    (``by='both'``, what a shrink removes), or ``|alpha_hat|`` alone
    (``by='alpha_hat'``: what gates a shrink and what the last epoch
    removes, as in the authors' code).

    Raises:
        FloatingPointError: a value is NaN or inf (names block and kernel);
            the caller removes nothing.
    """
    if by not in ('both', 'alpha_hat'):
        raise ValueError(f"by must be 'both' or 'alpha_hat', got {by!r}")
    masks = {}
    for key, a in alpha.items():
        ah = alpha_hat[key].to(a.device)
        if not (torch.isfinite(a).all() and torch.isfinite(ah).all()):
            raise FloatingPointError(
                f'block {key[0]} kernel {key[1]} has a NaN/inf BN gamma '
                '(importance)')
        masks[key] = ah.abs() <= threshold
        if by == 'both':
            masks[key] &= a.abs() <= threshold
    return masks


def mask_cost(masks: Mapping[Key, torch.Tensor],
              atom_cost: Mapping[Key, float]) -> float:
    """Total cost of the atoms set in ``masks``."""
    return float(sum(int(m.sum()) * atom_cost[key]
                     for key, m in masks.items()))


def block_relative(strength: Mapping[Key, torch.Tensor]
                   ) -> Dict[Key, torch.Tensor]:
    """Each atom's strength divided by the mean strength of its block (all
    kernels together).

    The cost-weighted penalty pulls every gamma of a costly block harder,
    so a block's level says more about its cost than about its atoms'
    use; within a block the pull is (nearly) the same, so the order
    there is the task's. Ranking by this ratio removes a block's weakest
    atoms relative to their neighbours and never empties a block before
    every other has come down to its own weakest. A block whose atoms are
    all 0 keeps 0.
    """
    totals: Dict[int, List[float]] = {}
    for (i, _), s in strength.items():
        acc = totals.setdefault(i, [0.0, 0])
        acc[0] += float(s.abs().sum())
        acc[1] += s.numel()
    out = {}
    for key, s in strength.items():
        total, n = totals[key[0]]
        mean = total / n if n else 0.0
        out[key] = s.abs() / mean if mean > 0 else s.abs()
    return out


@dataclass
class RemovalPlan:
    """What a shrink removes.

    Attributes:
        keep: Block -> kernel -> indices of the atoms to keep (every kernel
            of every changed block; an empty tensor removes the kernel).
        atoms: Number of atoms removed.
        cost: Their total cost (the unit of ``atom_cost``).
        notes: Decisions worth a log line (a block kept its strongest atom,
            removal capped by a target).
    """
    keep: Dict[int, Dict[int, torch.Tensor]]
    atoms: int
    cost: float
    notes: List[str] = field(default_factory=list)


def plan_removal(spec: ArchSpec, dead: Mapping[Key, torch.Tensor],
                 importance: Mapping[Key, torch.Tensor],
                 atom_cost: Mapping[Key, float], delta: float,
                 divisor: int = 1,
                 budget: Optional[float] = None,
                 gate: Optional[float] = None) -> Optional[RemovalPlan]:
    """Turn dead masks into a removal, or None when it is not worth one.

    Rules, in order:

    1. A block without residual keeps at least one atom: when all of its
       atoms are dead it keeps its strongest (highest ``importance``), or
       its ``divisor`` strongest of that kernel.
    2. ``divisor``: every changed kernel keeps 0 or a multiple of
       ``divisor`` atoms (at most what it has), rounding up by keeping the
       strongest of the atoms that would die.
    3. ``budget`` (cost that may still go before a target is reached): the
       removable atoms go least important first, in groups of ``divisor``
       per kernel, while the removed cost is below ``budget``, so the net
       ends at most one group below the target.
    4. Nothing is removed when the cost that decides (``gate``, else the
       cost that would be removed) is below ``delta`` (or below
       ``budget``, when that is smaller and positive).

    Args:
        spec: The net's current spec.
        dead: Key -> bool mask of dead atoms (every live kernel).
        importance: Key -> per-atom strength (``|alpha_hat|``).
        atom_cost: Key -> cost of one atom of that kernel.
        delta: Least cost worth a removal.
        divisor: Channel divisor (1: any count).
        budget: Most cost to remove (None: no target).
        gate: The cost compared with ``delta`` (the authors compare the
            atoms dead by ``alpha_hat`` alone: :func:`mask_cost`). None:
            the cost of the atoms removed.

    Returns:
        RemovalPlan or None.
    """
    if divisor < 1:
        raise ValueError(f'divisor must be >= 1, got {divisor}')
    notes: List[str] = []
    removable: Dict[Key, torch.Tensor] = {}  # sorted weakest first
    for i, block in enumerate(spec.blocks):
        keys = [(i, k) for k in block.kernels]
        if not keys or not any(bool(dead[key].any()) for key in keys):
            continue
        keep_one = None
        if not block.has_residual and all(bool(dead[key].all())
                                          for key in keys):
            keep_one = max(keys, key=lambda key: float(
                importance[key].abs().max()))
            notes.append(f'every atom of block {i} is dead but it has no '
                         f'residual; it keeps its strongest (kernel '
                         f'{keep_one[1]})')
        for key in keys:
            n = spec.blocks[i].kernels[key[1]]
            strength = importance[key].abs().float()
            dying = dead[key].nonzero().flatten()
            keep_n = n - len(dying)
            if key == keep_one:
                keep_n = max(keep_n, 1)
            if keep_n and divisor > 1:
                keep_n = min(n, -(-keep_n // divisor) * divisor)
            go = n - keep_n
            if go <= 0:
                continue
            # The weakest of the dying go; the strongest of them stay when
            # rounding (or the keep-one rule) keeps more.
            order = dying[strength[dying].argsort(stable=True)]
            removable[key] = order[:go]
    if not removable:
        return None

    if budget is not None:
        removable = _within_budget(removable, importance, atom_cost, divisor,
                                   budget, notes)
        if not removable:
            return None
    cost = sum(len(idx) * atom_cost[key] for key, idx in removable.items())
    floor = delta if budget is None or budget <= 0 else min(delta, budget)
    if cost <= 0 or (cost if gate is None else gate) < floor:
        return None

    keep: Dict[int, Dict[int, torch.Tensor]] = {}
    for (i, _), _idx in removable.items():
        if i in keep:
            continue
        keep[i] = {}
        for k, n in spec.blocks[i].kernels.items():
            mask = torch.ones(n, dtype=torch.bool)
            if (i, k) in removable:
                mask[removable[(i, k)].cpu()] = False
            keep[i][k] = mask.nonzero().flatten()
    atoms = sum(len(v) for v in removable.values())
    return RemovalPlan(keep, atoms, float(cost), notes)


def _within_budget(removable: Dict[Key, torch.Tensor],
                   importance: Mapping[Key, torch.Tensor],
                   atom_cost: Mapping[Key, float], divisor: int,
                   budget: float, notes: List[str]
                   ) -> Dict[Key, torch.Tensor]:
    """The least important groups of removable atoms whose cost stays
    within ``budget`` (the last group may cross it)."""
    groups = []  # (strength of the group's strongest, key, indices)
    for key, idx in removable.items():
        strength = importance[key].abs().float()
        step = divisor if len(idx) % divisor == 0 else len(idx)
        for s in range(0, len(idx), step):
            part = idx[s:s + step]
            groups.append((float(strength[part].max()), key, part))
    groups.sort(key=lambda g: g[0])
    taken: Dict[Key, List[torch.Tensor]] = {}
    spent = 0.0
    for _, key, part in groups:
        if spent >= budget:
            break
        taken.setdefault(key, []).append(part)
        spent += len(part) * atom_cost[key]
    total = sum(len(i) * atom_cost[k] for k, i in removable.items())
    if spent < total:
        notes.append(f'removal capped by the target: {spent:.4g} of '
                     f'{total:.4g} dead cost removed')
    return {key: torch.cat(parts) for key, parts in taken.items()}
