"""Reading checkpoints written by an AtomNAS search: they carry their net's
spec in ``meta['atomnas_spec']``."""
from typing import Any, Mapping, Union

import torch

from .arch.spec import ArchSpec, SpecError, load_spec

SPEC_META_KEY = 'atomnas_spec'


def load_checkpoint_file(path: str) -> dict:
    """``torch.load`` with the weights-only unpickler, memory-mapped where
    the file allows it (reading the spec then touches no weight).

    Raises:
        SpecError: one line naming the file when it is missing or is not a
            checkpoint.
    """
    import os.path as osp
    if not osp.isfile(path):
        raise SpecError(f'{path}: no such checkpoint')
    try:
        try:
            ckpt: Any = torch.load(path, map_location='cpu',
                                   weights_only=True, mmap=True)
        except RuntimeError as e:
            if 'mmap' not in str(e):
                raise
            # A legacy (non-zip) torch file cannot be memory-mapped.
            ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: BLE001  (any unreadable file: one line)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ''
        raise SpecError(f'{path}: cannot be read as a checkpoint '
                        f'({type(e).__name__}: {first[:200]})') from None
    if not isinstance(ckpt, dict):
        raise SpecError(f'{path}: not a checkpoint (a {type(ckpt).__name__})')
    return ckpt


def spec_from_checkpoint(ckpt: Union[str, Mapping],
                         path: str = 'checkpoint') -> ArchSpec:
    """The spec stored in a checkpoint (a path, or a loaded dict and its
    path for messages).

    Raises:
        SpecError: one line naming the file when it holds no valid spec.
    """
    if isinstance(ckpt, str):
        path, ckpt = ckpt, load_checkpoint_file(ckpt)
    meta = ckpt.get('meta')
    spec = meta.get(SPEC_META_KEY) if isinstance(meta, Mapping) else None
    if spec is None:
        raise SpecError(f'{path}: holds no AtomNAS spec (meta.{SPEC_META_KEY}'
                        '); use a checkpoint written by an AtomNAS search '
                        '(e.g. its deploy.pth) or give arch explicitly')
    try:
        return load_spec(spec)
    except SpecError as e:
        raise SpecError(f'{path}: {e}') from None
