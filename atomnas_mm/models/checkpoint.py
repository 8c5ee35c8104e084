"""Reading checkpoints: one loader for every path (tools, ``Pretrained``,
mmengine's own loads), and the spec that a search writes into
``meta['atomnas_spec']``.

Every failure is a :class:`CheckpointError` whose message is one line naming
the file, what is wrong and, where there is one, the fix.
"""
from __future__ import annotations

import os.path as osp
import pickle
import re
import zipfile
from typing import Any, Dict, Mapping, Optional, Union

import torch

from .arch.spec import ArchSpec, SpecError, load_spec

SPEC_META_KEY = 'atomnas_spec'
# blocks.<i>.branches.k<k>.dw_conv.weight, under any prefix (backbone.,
# module.backbone. of an EMA copy, none for a bare backbone).
_DW_KEY = re.compile(r'^(.*?)blocks\.(\d+)\.branches\.k(\d+)\.dw_conv\.weight$')


class CheckpointError(SpecError):
    """An unreadable, foreign or inconsistent checkpoint (one line naming
    the file)."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _unsafe_global(e: pickle.UnpicklingError) -> Optional[str]:
    m = re.search(r'(?:Unsupported global: GLOBAL|unsupported GLOBAL) '
                  r'([\w.]+)', str(e))
    return m.group(1) if m else None


def load_checkpoint_file(path: str, map_location: Any = 'cpu') -> dict:
    """``torch.load`` with the weights-only unpickler (memory-mapped where
    the file allows it, so reading a spec touches no weight).

    Raises:
        CheckpointError: the file is missing, empty, truncated, not a torch
            file, not a dict, or needs a global that is not allowed.
    """
    if not osp.isfile(path):
        raise CheckpointError(f'{path}: no such checkpoint file')
    if osp.getsize(path) == 0:
        raise CheckpointError(f'{path}: the file is empty (a write that '
                              'never finished?)')
    if zipfile.is_zipfile(path) is False and _looks_truncated_zip(path):
        raise CheckpointError(f'{path}: the file is truncated (a write that '
                              'never finished?); use an older checkpoint')
    from ..utils.seams import mmengine_checkpoint_globals
    try:
        # What an mmengine checkpoint holds is allowed for this call only.
        with torch.serialization.safe_globals(mmengine_checkpoint_globals()):
            try:
                ckpt = torch.load(path, map_location=map_location,
                                  weights_only=True, mmap=True)
            except RuntimeError as e:
                if 'mmap' not in str(e):
                    raise
                # A legacy (non-zip) torch file cannot be memory-mapped.
                ckpt = torch.load(path, map_location=map_location,
                                  weights_only=True)
    except pickle.UnpicklingError as e:
        name = _unsafe_global(e)
        if name is None:
            detail = re.search(r'WeightsUnpickler error: \s*(.+)', str(e))
            raise CheckpointError(
                f'{path}: cannot be read as a checkpoint ('
                f'{detail.group(1).strip() if detail else _first_line(e)})'
            ) from None
        raise CheckpointError(
            f'{path}: needs the global {name}, which the safe loader does '
            'not allow (a pickle can run code); if you trust this file, '
            f're-save it with `python tools/misc/trust_checkpoint.py {path}`'
        ) from None
    except Exception as e:  # noqa: BLE001  (any unreadable file: one line)
        raise CheckpointError(f'{path}: cannot be read as a checkpoint '
                              f'({type(e).__name__}: {_first_line(e)})'
                              ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{path}: not a checkpoint but a '
                              f'{type(ckpt).__name__}; expected a dict with '
                              'a state_dict')
    return ckpt


def _looks_truncated_zip(path: str) -> bool:
    """A torch zip file starts with 'PK'; one that does but is no valid zip
    was cut short."""
    with open(path, 'rb') as f:
        return f.read(2) == b'PK'


def state_dict_of(ckpt: Mapping, path: str = 'checkpoint',
                  prefer_ema: bool = False) -> Dict[str, torch.Tensor]:
    """The weights of a loaded checkpoint: its ``state_dict`` (or, with
    ``prefer_ema``, mmengine's EMA copy, ``module.`` stripped), or the dict
    itself when it is a bare state dict.

    Raises:
        CheckpointError: it holds no tensors to load.
    """
    if prefer_ema and isinstance(ckpt.get('ema_state_dict'), Mapping):
        ema = {k[len('module.'):]: v for k, v in ckpt['ema_state_dict'].items()
               if k.startswith('module.')}
        if ema:
            return ema
    state = ckpt.get('state_dict', ckpt)
    if not isinstance(state, Mapping) or not state or not all(
            torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f'{path}: holds no state_dict of tensors (keys: '
                              f'{", ".join(map(str, list(ckpt)[:5]))})')
    return dict(state)


def kernels_in_weights(state: Mapping[str, Any]
                       ) -> Dict[str, Dict[int, Dict[int, int]]]:
    """Prefix -> block -> kernel -> atoms, read from the depthwise conv
    weights' shapes (every AtomNASNet in the state dict: the backbone of a
    model, of its EMA copy, or a bare backbone)."""
    found: Dict[str, Dict[int, Dict[int, int]]] = {}
    for key, value in state.items():
        m = _DW_KEY.match(key)
        if m and torch.is_tensor(value):
            found.setdefault(m.group(1), {}).setdefault(
                int(m.group(2)), {})[int(m.group(3))] = value.shape[0]
    return found


def check_weights_match_spec(state: Mapping[str, Any], spec: ArchSpec,
                             where: str) -> None:
    """Refuse weights whose atoms per kernel differ from ``spec``.

    Raises:
        CheckpointError: naming the block and kernel, the spec's count and
            the weights' count.
    """
    for prefix, blocks in kernels_in_weights(state).items():
        for i, b in enumerate(spec.blocks):
            have = dict(sorted(blocks.get(i, {}).items()))
            if have != b.kernels:
                raise CheckpointError(
                    f'{where}: its spec (meta.{SPEC_META_KEY}) says blocks[{i}]'
                    f' has kernels {_fmt(b.kernels)} but its weights '
                    f'({prefix}blocks.{i}) have {_fmt(have)}: the file is '
                    'inconsistent; export it again from the search')
        extra = sorted(set(blocks) - set(range(len(spec.blocks))))
        if extra:
            raise CheckpointError(
                f'{where}: its weights have block {extra[0]} but its spec '
                f'has only {len(spec.blocks)} blocks')


def _fmt(kernels: Mapping[int, int]) -> str:
    return '{' + ', '.join(f'{k}: {n}' for k, n in kernels.items()) + '}' \
        if kernels else 'none (identity)'


def spec_from_checkpoint(ckpt: Union[str, Mapping],
                         path: str = 'checkpoint',
                         check_weights: bool = True) -> ArchSpec:
    """The spec stored in a checkpoint (a path, or a loaded dict and its
    path for messages), checked against the checkpoint's weights.

    Raises:
        CheckpointError: one line naming the file when it holds no valid
            spec, or one that its weights contradict.
    """
    if isinstance(ckpt, str):
        path, ckpt = ckpt, load_checkpoint_file(ckpt)
    spec = checkpoint_spec_or_none(ckpt, path)
    if spec is None:
        raise CheckpointError(
            f'{path}: holds no AtomNAS spec (meta.{SPEC_META_KEY}); use a '
            'checkpoint written by an AtomNAS search (e.g. its deploy.pth) or '
            'give arch explicitly')
    if check_weights:
        for key in ('state_dict', 'ema_state_dict'):
            if isinstance(ckpt.get(key), Mapping):
                check_weights_match_spec(ckpt[key], spec, path)
    return spec


def checkpoint_spec_or_none(ckpt: Mapping, path: str = 'checkpoint'
                            ) -> Optional[ArchSpec]:
    """The spec in ``meta`` if there is one (not checked against the
    weights), else None.

    Raises:
        CheckpointError: there is a spec but it is invalid.
    """
    meta = ckpt.get('meta')
    raw = meta.get(SPEC_META_KEY) if isinstance(meta, Mapping) else None
    if raw is None:
        return None
    try:
        return load_spec(raw)
    except SpecError as e:
        raise CheckpointError(f'{path}: meta.{SPEC_META_KEY}: {e}') from None


def spec_of_weights(state: Mapping[str, Any], prefix: str, spec: ArchSpec,
                    own: Mapping[str, torch.Tensor]) -> ArchSpec:
    """The structure of a bare state dict (no spec saved with it), for a
    net of ``spec`` whose own state dict is ``own``: a kernel takes the
    weights' atom count only when every one of its keys is present under
    ``prefix`` and agrees; a kernel or block whose keys are absent keeps
    its count (its keys are then reported missing by the load, never
    dropped or made the identity).

    Raises:
        SpecError: the weights hold more atoms of a kernel than ``spec``
            (another architecture: build the net from its spec).
    """
    import copy
    found = kernels_in_weights(
        {k: v for k, v in state.items() if k.startswith(prefix)
         and k[len(prefix):].startswith('blocks.')}).get(prefix, {})
    for i, kernels in found.items():
        have = spec.blocks[i].kernels if i < len(spec.blocks) else {}
        for k, n in kernels.items():
            if n > have.get(k, 0):
                raise SpecError(
                    f'state dict: blocks[{i}].kernels.{k}: the weights have '
                    f'{n} atoms, this net {have.get(k, 0)} (another '
                    'architecture: build the net from its spec)')
    out = copy.deepcopy(spec)
    for i, b in enumerate(out.blocks):
        for k, n in list(b.kernels.items()):
            saved = _complete_kernel_size(state, own, f'{prefix}blocks.{i}.'
                                          f'branches.k{k}.', f'blocks.{i}.'
                                          f'branches.k{k}.')
            if saved is not None and saved < n:
                b.kernels[k] = saved
    return out


def _complete_kernel_size(state: Mapping, own: Mapping, prefix: str,
                          own_prefix: str) -> Optional[int]:
    """Atoms of one kernel's branch as saved in ``state``, or None when any
    of its keys is absent or their sizes disagree."""
    n = None
    names = [k[len(own_prefix):] for k in own if k.startswith(own_prefix)]
    if not names:
        return None
    for name in names:
        saved = state.get(prefix + name)
        if saved is None:
            return None
        if own[own_prefix + name].dim() == 0:
            continue  # num_batches_tracked
        dim = 1 if name == 'project_conv.weight' else 0
        size = saved.shape[dim] if saved.dim() > dim else None
        if size is None or (n is not None and size != n):
            return None
        n = size
    return n
