"""Hardware-friendly widths: every kernel's atom count 0 or a multiple of a
channel divisor. Pure Python on specs."""
from __future__ import annotations

import copy
from typing import Optional

from .spec import ArchSpec, SpecError, SpecLike, load_spec


def check_divisor(divisor) -> int:
    if isinstance(divisor, bool) or not isinstance(divisor, int) or \
            divisor < 1:
        raise ValueError(f'channel_divisor must be an integer >= 1, got '
                         f'{divisor!r}')
    return divisor


def first_not_divisible(spec: ArchSpec, divisor: int) -> Optional[str]:
    """``'blocks[i].kernels.k has n atoms'`` for the first kernel whose count
    is not a multiple of ``divisor``, or None when all are."""
    for i, b in enumerate(spec.blocks):
        for k, n in b.kernels.items():
            if n % divisor:
                return f'blocks[{i}].kernels.{k} has {n} atoms'
    return None


def round_spec(spec: SpecLike, divisor: int,
               cap: Optional[SpecLike] = None) -> ArchSpec:
    """Every kernel's count rounded up to a multiple of ``divisor`` (0 stays
    0), at most ``cap``'s count of that kernel when a supernet is given (a
    cap that is not itself a multiple is refused).

    Raises:
        SpecError: ``cap`` is not a supernet of ``spec`` or its count of a
            kernel that needs rounding is not a multiple of ``divisor``.
    """
    check_divisor(divisor)
    spec = copy.deepcopy(load_spec(spec))
    limit = load_spec(cap) if cap is not None else None
    if limit is not None:
        spec.check_subnet_of(limit, 'the spec', 'the cap')
    for i, b in enumerate(spec.blocks):
        for k, n in list(b.kernels.items()):
            up = -(-n // divisor) * divisor
            if limit is not None:
                most = limit.blocks[i].kernels.get(k, 0)
                if up > most:
                    raise SpecError(
                        f'blocks[{i}].kernels.{k}: rounding {n} up to {up} '
                        f'exceeds the supernet\'s {most} atoms')
            b.kernels[k] = up
    return spec
