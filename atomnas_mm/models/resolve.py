"""One resolver for every way of naming an architecture.

The backbone and every tool take the same inputs: a shipped name, a spec
file (JSON), an inline dict or :class:`ArchSpec`, a checkpoint written by a
search (its ``meta['atomnas_spec']``, checked against its weights), or a
config file (its backbone's ``arch``, and the checkpoint of a ``Pretrained``
``init_cfg`` when ``arch`` is None).
"""
from __future__ import annotations

import os
import os.path as osp
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

from .arch.spec import ArchSpec, SpecError, SpecLike, load_spec
from .checkpoint import (checkpoint_spec_or_none, load_checkpoint_file,
                         spec_from_checkpoint)

CHECKPOINT_SUFFIXES = ('.pth', '.pt', '.ckpt', '.bin')


@dataclass
class ResolvedArch:
    """A spec and what a tool may want to know about where it came from.

    Attributes:
        spec: The architecture.
        label: How to name the source in messages.
        num_classes: The classifier width of a config's head, if known.
        input_size: (H, W) a config trains or tests at, if known.
        input_size_from: Where ``input_size`` was read (for messages).
    """
    spec: ArchSpec
    label: str
    num_classes: Optional[int] = None
    input_size: Optional[Tuple[int, int]] = None
    input_size_from: str = ''


def is_checkpoint_path(path: str) -> bool:
    """A checkpoint by its suffix, or by its content (torch zip files start
    with 'PK', legacy pickles with 0x80)."""
    if path.endswith(CHECKPOINT_SUFFIXES):
        return True
    if not osp.isfile(path) or path.endswith(('.json', '.py')):
        return False
    with open(path, 'rb') as f:
        head = f.read(2)
    return head == b'PK' or head[:1] == b'\x80'


def resolve_arch(source: Any) -> ResolvedArch:
    """Resolve any architecture source (see the module docstring).

    Raises:
        SpecError: one line naming the source and what is wrong with it.
    """
    if isinstance(source, ArchSpec):
        return ResolvedArch(load_spec(source), 'the given spec')
    if isinstance(source, Mapping):
        return ResolvedArch(load_spec(dict(source)), 'the given spec')
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if path.endswith('.py'):
            return resolve_config(path)
        if is_checkpoint_path(path):
            return ResolvedArch(spec_from_checkpoint(path), path)
        return ResolvedArch(load_spec(path), path)
    raise SpecError(f'arch: expected a name, a spec or checkpoint path, a '
                    f'config or a dict, got {type(source).__name__}')


def resolve_spec(source: SpecLike) -> ArchSpec:
    """Shorthand: the spec of :func:`resolve_arch`."""
    return resolve_arch(source).spec


def pretrained_checkpoint(init_cfg: Any) -> Optional[str]:
    """The checkpoint of the *last* ``Pretrained`` entry of an
    ``init_cfg``: mmengine applies the entries in order, so the last file
    is the one whose weights the net ends with (and whose spec it must be
    built to)."""
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    found = None
    for c in cfgs:
        if isinstance(c, Mapping) and c.get('type') == 'Pretrained':
            found = c.get('checkpoint')
    return found


def backbone_spec(arch: Any, init_cfg: Any = None) -> ResolvedArch:
    """The spec an :class:`AtomNASNet` is built to: the one rule for
    ``arch`` and ``init_cfg`` together.

    ``arch`` is anything :func:`resolve_arch` takes. When the last
    ``Pretrained`` entry of ``init_cfg`` names a checkpoint that carries a
    spec, the net is built to that spec, so its weights fit without
    replacing parameters while mmengine initialises: ``arch=None`` takes it
    as it is; an ``arch`` of which it is a sub-net (the supernet it was
    searched from) is narrowed to it; any other ``arch`` is refused. Only
    the checkpoint's ``meta`` is read here (memory-mapped), never its
    weights.

    Raises:
        SpecError: one line naming the source and the fix.
    """
    pretrained = pretrained_checkpoint(init_cfg)
    if arch is None:
        if pretrained is None:
            raise SpecError('AtomNASNet: arch is None, so init_cfg must be '
                            'Pretrained from a checkpoint that carries a '
                            'spec')
        return resolve_arch(pretrained)
    resolved = resolve_arch(arch)
    if pretrained is None or pretrained == arch or \
            not osp.isfile(pretrained):
        return resolved
    saved = checkpoint_spec_or_none(load_checkpoint_file(pretrained),
                                    pretrained)
    if saved is None or saved == resolved.spec:
        return resolved
    try:
        saved.check_subnet_of(resolved.spec, pretrained,
                              f'arch {resolved.label}')
    except SpecError as e:
        raise SpecError(f'{e}: init_cfg.checkpoint holds another net; set '
                        'arch=None to build it') from None
    return ResolvedArch(saved, pretrained)


def read_config(path: str):
    """``mmengine.Config.fromfile(path)``, with a missing or broken file
    refused in one line (:class:`SpecError`) instead of a traceback."""
    if not osp.isfile(path):
        raise SpecError(f'{path}: no such config file')
    import atomnas_mm  # noqa: F401  (atomnas_mm:: bases, registries)
    from mmengine.config import Config
    try:
        return Config.fromfile(path)
    except Exception as e:  # noqa: BLE001  (a broken config: one line)
        raise SpecError(f'{path}: cannot be read as a config '
                        f'({type(e).__name__}: {str(e).splitlines()[0]})'
                        ) from None


def resolve_config(path: str) -> ResolvedArch:
    """The backbone spec, classes and input size of a config file."""
    cfg = read_config(path)
    model = cfg.get('model') or {}
    backbone = model.get('backbone', model)
    if 'arch' not in backbone:
        raise SpecError(f'{path}: model.backbone has no "arch" (not an '
                        'AtomNASNet config?)')
    arch = backbone.get('arch')
    if arch is None:
        arch = pretrained_checkpoint(backbone.get('init_cfg'))
        if arch is None:
            raise SpecError(f'{path}: model.backbone.arch is None and no '
                            'Pretrained checkpoint is given')
    try:
        spec = resolve_arch(arch.to_dict() if hasattr(arch, 'to_dict')
                            else arch).spec
    except SpecError as e:
        raise SpecError(f'{path}: model.backbone.arch: {e}') from None
    if backbone.get('act') is not None:
        spec.activation = backbone.act
    if backbone.get('se_ratio') is not None:
        spec.se_ratio = float(backbone.se_ratio)
    head = model.get('head') or {}
    size, where = config_input_size(cfg)
    return ResolvedArch(spec, path, head.get('num_classes'), size, where)


def config_input_size(cfg) -> Tuple[Optional[Tuple[int, int]], str]:
    """The input (H, W) a config evaluates at: the test pipeline's crop or
    resize, else the search hooks' ``input_size``.

    Returns:
        ((H, W) or None, where it was read).
    """
    def hw(value) -> Optional[Tuple[int, int]]:
        if isinstance(value, int):
            return value, value
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(
                isinstance(v, int) for v in value):
            return value[1], value[0]  # mmcv scales are (w, h)
        return None

    pipeline = (cfg.get('test_dataloader') or {}).get('dataset', {}).get(
        'pipeline') or cfg.get('test_pipeline') or []
    for step in reversed(list(pipeline)):
        for key in ('crop_size', 'scale'):
            size = hw(step.get(key)) if isinstance(step, Mapping) else None
            if size is not None:
                return size, f'test pipeline {step.get("type")}.{key}'
    for hook in cfg.get('custom_hooks') or []:
        if 'input_size' in hook:
            size = hw(hook['input_size'])
            if size is not None:
                return size, f'{hook["type"]}.input_size'
    return None, ''
