"""Convert checkpoints of the authors' AtomNAS code
(github.com/meijieru/AtomNAS) into mmpretrain checkpoints of
:class:`AtomNASNet`.

Their training saves ``NAME.pt``, a dict with ``model`` (the state dict,
with DDP's ``module.`` prefix), ``ema`` (``shadow``: the averaged parameters
and BN running statistics), the optimizer, the epoch and their meters, and
``NAME.yml``, the net's keyword arguments as a Python literal.

Their net: ``features.0`` the stem (conv, BN, act), ``features.1`` the fixed
first block (depthwise, no expansion), then one entry per searched block,
then the 1x1 head conv (conv, BN, act); ``classifier.1`` the linear layer.
A block comes in one of two layouts:

* non-fused (AtomNAS-A/B/C): per kernel ``ops.j`` = expand (conv, BN, act),
  depthwise (conv, BN, act), project conv; the kernels' projections are
  summed and normalised by one BN, ``pw_bn``;
* fused (the "+" nets): one ``expand_conv`` (conv, BN, act) for all
  kernels, per kernel ``depth_ops.j`` = a channel slice and a depthwise
  (conv, BN, act), SE (``se_op``) on the concatenated channels, and
  ``project_conv`` (conv, BN).

Ours holds each kernel's slice of the expand and project convs as that
kernel's own convs, which computes the same function, so the conversion is
slicing and renaming only.
"""
from __future__ import annotations

import ast
import os
import os.path as osp
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from ..arch import ArchSpec, SpecError, count, load_spec
from ..checkpoint import SPEC_META_KEY, CheckpointError
from .safe_pickle import BrokenFileError, UnsafePickleError, safe_torch_load

#: BN epsilon of the authors' ImageNet nets (their configs override 1e-5).
AUTHORS_BN_EPS = 1e-3
_ACTS = {'nn.ReLU': 'relu', 'nn.Swish': 'swish'}
_BN = ('weight', 'bias', 'running_mean', 'running_var')
_FEATURE = re.compile(r'^features\.(\d+)\.(.+)$')


class ConversionError(CheckpointError):
    """A file that cannot be converted: one line naming the file, what is
    wrong and the fix."""


class _Fail(Exception):
    """An error about the checkpoint (or, with ``file``, another file)."""

    def __init__(self, message: str, file: Optional[str] = None) -> None:
        super().__init__(message)
        self.file = file


@dataclass
class Converted:
    """What :func:`convert_authors_checkpoint` returns.

    Attributes:
        spec: The net.
        state_dict: ``backbone.*`` and ``head.fc.*`` weights of an
            mmpretrain ``ImageClassifier``.
        meta: ``atomnas_spec`` and where the weights came from.
        notes: What was read and what was inferred, for the user.
    """
    spec: ArchSpec
    state_dict: Dict[str, Tensor]
    meta: dict
    notes: List[str] = field(default_factory=list)


# ------------------------------------------------------------------ reading
def _strip(key: str) -> str:
    return key[len('module.'):] if key.startswith('module.') else key


def _is_state_dict(value) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in value.items())


def _weights(ckpt, use_ema: bool) -> Tuple[Dict[str, Tensor], str]:
    """Their weights, names without ``module.``: the EMA's (parameters and
    running statistics; num_batches_tracked, which it does not average,
    from ``model``) or ``model``'s. Returns (weights, what they are)."""
    if not isinstance(ckpt, Mapping):
        raise _Fail(f'not a checkpoint of the authors\' AtomNAS code but a '
                    f'{type(ckpt).__name__}; give their NAME.pt')
    if _is_state_dict(ckpt.get('state_dict')) and any(
            k.startswith('backbone.') for k in ckpt['state_dict']):
        raise _Fail('is already an mmpretrain checkpoint (backbone.* '
                    'weights); use it as it is')
    model = ckpt.get('model', ckpt)
    if not _is_state_dict(model) or not any(
            _strip(k).startswith('features.') for k in model):
        keys = ', '.join(map(str, list(ckpt)[:4]))
        raise _Fail('not a checkpoint of the authors\' AtomNAS code '
                    f'(expected \'model\' with features.* weights; it has '
                    f'{keys}); give their NAME.pt')
    model = {_strip(k): v for k, v in model.items()}
    if not use_ema:
        return model, 'the raw weights (model)'
    ema = ckpt.get('ema')
    shadow = ema.get('shadow') if isinstance(ema, Mapping) else None
    if not _is_state_dict(shadow):
        raise _Fail('has no EMA weights (ema.shadow); add --no-ema to '
                    'convert the raw weights')
    shadow = {_strip(k): v for k, v in shadow.items()}
    weights = {}
    for key, value in model.items():
        if key.endswith('num_batches_tracked'):
            weights[key] = value
            continue
        if key not in shadow:
            raise _Fail(f'ema.shadow lacks {key}: the file is inconsistent; '
                        'add --no-ema to convert the raw weights')
        if shadow[key].shape != value.shape:
            raise _Fail(f'ema.shadow.{key} has shape '
                        f'{tuple(shadow[key].shape)}, model.{key} '
                        f'{tuple(value.shape)}: the file is inconsistent; '
                        'add --no-ema')
        weights[key] = shadow[key]
    extra = sorted(set(shadow) - set(model))
    if extra:
        raise _Fail(f'ema.shadow has {extra[0]}, which model lacks: the file '
                    'is inconsistent; add --no-ema')
    return weights, 'EMA (ema.shadow; num_batches_tracked from model)'


def _read_yml(path: str) -> Optional[dict]:
    """The net's keyword arguments their code writes beside the checkpoint
    (``str(dict)``), parsed as a literal (never executed); None when there
    is no such file."""
    if not osp.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            data = ast.literal_eval(f.read())
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError,
            RecursionError) as e:
        raise _Fail(f'not the Python literal the authors\' code writes '
                    f'({type(e).__name__}); fix or remove it', path) from None
    rows = data.get('inverted_residual_setting') \
        if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(
            isinstance(r, (list, tuple)) and len(r) == 6 for r in rows):
        raise _Fail('has no inverted_residual_setting of 6-element rows '
                    '[channels, n, stride, kernels, hidden channels, '
                    'expand]; fix or remove it', path)
    return data


# ----------------------------------------------------------- their blocks
class _Group:
    """The weights of one ``features.<i>``; taking a key removes it, so
    that keys left over at the end are foreign."""

    def __init__(self, index: int, weights: Dict[str, Tensor]) -> None:
        self.name, self.w = f'features.{index}', dict(weights)

    def has(self, key: str) -> bool:
        return key in self.w

    def indices(self, prefix: str) -> List[int]:
        found = {int(m.group(1)) for k in self.w
                 for m in [re.match(rf'{re.escape(prefix)}(\d+)\.', k)] if m}
        if found and found != set(range(len(found))):
            raise _Fail(f'{self.name}.{prefix}*: kernels {sorted(found)} are '
                        'not numbered 0..n-1: a damaged state dict')
        return sorted(found)

    def take(self, key: str) -> Tensor:
        if key not in self.w:
            raise _Fail(f'{self.name}.{key} is missing: a damaged or foreign '
                        'state dict')
        return self.w.pop(key)

    def bn(self, prefix: str) -> Dict[str, Tensor]:
        out = {n: self.take(prefix + n) for n in _BN}
        out['num_batches_tracked'] = self.w.pop(
            prefix + 'num_batches_tracked', torch.tensor(0))
        return out

    def se(self) -> Optional[Dict[str, Tensor]]:
        if not self.has('se_op.se_reduce.weight'):
            return None
        return {f'{conv}.{p}': self.take(f'se_op.se_{conv}.{p}')
                for conv in ('reduce', 'expand') for p in ('weight', 'bias')}

    def done(self) -> None:
        if self.w:
            raise _Fail(f'{self.name}.{sorted(self.w)[0]} is not part of an '
                        'AtomNAS block: a foreign state dict')


@dataclass
class _Block:
    """One of their blocks, per kernel in their order."""
    fused: bool
    in_channels: int
    out_channels: int
    kernels: List[Tuple[int, int]]  # (kernel size, channels)
    tensors: Dict[str, Tensor]      # ours, relative to the block
    se: Optional[Dict[str, Tensor]] = None  # over their concatenation

    @property
    def se_channels(self) -> int:
        return self.se['reduce.weight'].shape[0] if self.se else 0


def _bn_into(out: Dict[str, Tensor], prefix: str, bn: Dict[str, Tensor],
             index: Optional[slice] = None) -> None:
    for name, value in bn.items():
        keep = index is not None and name != 'num_batches_tracked'
        out[prefix + name] = value[index] if keep else value


def _kernel_size(dw: Tensor, where: str) -> int:
    if dw.dim() != 4 or dw.shape[1] != 1 or dw.shape[2] != dw.shape[3]:
        raise _Fail(f'{where} is not a depthwise conv weight (shape '
                    f'{tuple(dw.shape)}): a foreign state dict')
    return dw.shape[-1]


def _first_block(g: _Group) -> _Block:
    """``features.1``: depthwise, [SE], project, no expansion."""
    if g.has('ops.0.1.weight'):
        if g.indices('ops.') != [0]:
            raise _Fail(f'{g.name} has several kernels; AtomNASNet\'s first '
                        'block has one')
        dw, dw_bn = g.take('ops.0.0.0.weight'), g.bn('ops.0.0.1.')
        project, project_bn = g.take('ops.0.1.weight'), g.bn('pw_bn.')
        se, fused = None, False
    elif g.has('depth_ops.0.0.0.weight'):
        if g.indices('depth_ops.') != [0]:
            raise _Fail(f'{g.name} has several kernels; AtomNASNet\'s first '
                        'block has one')
        dw, dw_bn = g.take('depth_ops.0.0.0.weight'), g.bn('depth_ops.0.0.1.')
        se = g.se()
        project, project_bn = g.take('project_conv.0.weight'), \
            g.bn('project_conv.1.')
        fused = True
    else:
        raise _Fail(f'{g.name} is not the fixed first block (a depthwise conv '
                    'without expansion): not an AtomNAS net')
    g.done()
    k = _kernel_size(dw, f'{g.name} depthwise')
    t = {'dw_conv.weight': dw, 'project_conv.weight': project}
    _bn_into(t, 'dw_bn.', dw_bn)
    _bn_into(t, 'project_bn.', project_bn)
    if se:
        t.update({f'se.{k_}': v for k_, v in se.items()})
    return _Block(fused, dw.shape[0], project.shape[0], [(k, dw.shape[0])], t,
                  se)


def _searched_block(g: _Group) -> _Block:
    """A searched block in either layout, as our per-kernel tensors."""
    t: Dict[str, Tensor] = {}
    kernels = []
    if g.has('expand_conv.0.weight'):  # fused
        expand, expand_bn = g.take('expand_conv.0.weight'), \
            g.bn('expand_conv.1.')
        dws = [(g.take(f'depth_ops.{j}.1.0.weight'),
                g.bn(f'depth_ops.{j}.1.1.')) for j in g.indices('depth_ops.')]
        se = g.se()
        project, project_bn = g.take('project_conv.0.weight'), \
            g.bn('project_conv.1.')
        start = 0
        for j, (dw, dw_bn) in enumerate(dws):
            k = _kernel_size(dw, f'{g.name}.depth_ops.{j}')
            part = slice(start, start + dw.shape[0])
            start += dw.shape[0]
            p = f'branches.k{k}.'
            t[p + 'expand_conv.weight'] = expand[part]
            _bn_into(t, p + 'expand_bn.', expand_bn, part)
            t[p + 'dw_conv.weight'] = dw
            _bn_into(t, p + 'dw_bn.', dw_bn)
            t[p + 'project_conv.weight'] = project[:, part]
            kernels.append((k, dw.shape[0]))
        if start != expand.shape[0]:
            raise _Fail(f'{g.name}: the depthwise convs use {start} of the '
                        f'{expand.shape[0]} expanded channels: a damaged '
                        'state dict')
        cin, fused = expand.shape[1], True
    elif g.has('pw_bn.weight'):  # non-fused (no ops: an identity block)
        se, cin, fused = None, None, False
        for j in g.indices('ops.'):
            dw = g.take(f'ops.{j}.1.0.weight')
            k = _kernel_size(dw, f'{g.name}.ops.{j}')
            p = f'branches.k{k}.'
            t[p + 'expand_conv.weight'] = g.take(f'ops.{j}.0.0.weight')
            _bn_into(t, p + 'expand_bn.', g.bn(f'ops.{j}.0.1.'))
            t[p + 'dw_conv.weight'] = dw
            _bn_into(t, p + 'dw_bn.', g.bn(f'ops.{j}.1.1.'))
            t[p + 'project_conv.weight'] = g.take(f'ops.{j}.2.weight')
            cin = t[p + 'expand_conv.weight'].shape[1]
            kernels.append((k, dw.shape[0]))
        project_bn = g.bn('pw_bn.')
    else:
        raise _Fail(f'{g.name} is not an AtomNAS block (neither ops.* with '
                    'pw_bn nor expand_conv/depth_ops/project_conv)')
    g.done()
    sizes = [k for k, _ in kernels]
    if len(set(sizes)) != len(sizes):
        raise _Fail(f'{g.name} has kernel sizes {sizes}; AtomNASNet takes '
                    'each size once')
    cout = project_bn['weight'].shape[0]
    if kernels:  # an empty block of theirs keeps an unused pw_bn
        _bn_into(t, 'project_bn.', project_bn)
    if se:
        # Their SE sees the kernels in their order; ours in ascending order.
        starts = dict(zip(sizes, [sum(n for _, n in kernels[:j])
                                  for j in range(len(kernels))]))
        perm = torch.cat([torch.arange(starts[k], starts[k] + n)
                          for k, n in sorted(kernels)])
        t['se.reduce.weight'] = se['reduce.weight'][:, perm]
        t['se.reduce.bias'] = se['reduce.bias']
        t['se.expand.weight'] = se['expand.weight'][perm]
        t['se.expand.bias'] = se['expand.bias'][perm]
    return _Block(fused, cin if cin is not None else cout, cout, kernels, t,
                  se)


# ------------------------------------------------------------ structure
def _supernet_strides() -> Dict[Tuple[int, int], int]:
    """Stride of each width change in the paper's supernet (16->24: 2, ...,
    80->96: 1, 192->320: 1); blocks that keep their width have stride 1."""
    out = {}
    for name in ('supernet', 'supernet_stem16'):
        for b in load_spec(name).blocks:
            if b.in_channels != b.out_channels:
                out[(b.in_channels, b.out_channels)] = b.stride
    return out


def _rows(yml: dict, path: str) -> List[tuple]:
    """Their ``inverted_residual_setting``, one row per block (n expanded:
    the stride on the first of the n)."""
    out = []
    for i, row in enumerate(yml['inverted_residual_setting']):
        c, n, s, ks, hs, expand = row
        if not (isinstance(n, int) and n >= 1 and s in (1, 2) and
                isinstance(ks, (list, tuple)) and
                isinstance(hs, (list, tuple)) and len(ks) == len(hs)):
            raise _Fail(f'inverted_residual_setting[{i}] = {row!r} is not '
                        '[channels, n, stride (1|2), kernels, hidden '
                        'channels, expand]; fix or remove it', path)
        kernels = [(k, h) for k, h in zip(ks, hs) if h]
        out += [(i, c, s if r == 0 else 1, kernels, bool(expand))
                for r in range(n)]
    return out


def _check_yml(yml: dict, path: str, first: _Block, blocks: List[_Block],
               stem: int, head: int, num_classes: int) -> List[int]:
    """Check the yml against the weights; return the blocks' strides."""
    def differ(what: str, said, found) -> _Fail:
        return _Fail(f'{what} is {said!r} but the weights have {found!r}: '
                     'it belongs to another net; remove or replace it', path)

    if yml.get('width_mult', 1.0) != 1.0:
        raise _Fail(f'width_mult {yml["width_mult"]} is not 1: not a searched '
                    'AtomNAS net', path)
    for key, found in (('input_channel', stem), ('last_channel', head),
                       ('num_classes', num_classes)):
        if key in yml and yml[key] != found:
            raise differ(key, yml[key], found)
    rows = _rows(yml, path)
    if len(rows) != len(blocks) + 1:
        raise differ('the number of blocks', len(rows), len(blocks) + 1)
    strides = []
    for b, (i, c, s, kernels, expand) in enumerate(rows):
        block = first if b == 0 else blocks[b - 1]
        where = f'inverted_residual_setting[{i}]'
        if expand != (b > 0):
            raise _Fail(f'{where}: expand={expand}, but only the first block '
                        'is built without expansion in an AtomNAS net', path)
        if c != block.out_channels:
            raise differ(f'{where} (features.{b + 1}) output channels', c,
                         block.out_channels)
        if [list(k) for k in kernels] != [list(k) for k in block.kernels]:
            raise differ(f'{where} (features.{b + 1}) [kernel, channels]',
                         [list(k) for k in kernels],
                         [list(k) for k in block.kernels])
        if b == 0 and s != 1:
            raise _Fail(f'{where}: stride {s}; AtomNASNet\'s first block has '
                        'stride 1', path)
        strides.append(s)
    return strides[1:]


def _activation(yml: Optional[dict], yml_path: str, act: Optional[str],
                has_se: bool, notes: List[str]) -> str:
    if yml is not None and 'active_fn' in yml:
        found = _ACTS.get(yml['active_fn'])
        if found is None:
            raise _Fail(f'active_fn {yml["active_fn"]!r}: AtomNASNet has '
                        f'{", ".join(_ACTS)} only', yml_path)
        if act is not None and act != found:
            raise _Fail(f'active_fn is {yml["active_fn"]!r} but --act {act} '
                        'was given; drop --act', yml_path)
        notes.append(f'activation: {found} (active_fn of the yml)')
        return found
    if act is not None:
        notes.append(f'activation: {act} (--act)')
        return act
    found = 'swish' if has_se else 'relu'
    notes.append(f'activation: {found} (inferred: '
                 + ('SE weights mean the "+" recipe, Swish' if has_se else
                    'no SE: the A/B/C recipe, ReLU')
                 + '; --act relu|swish to override)')
    return found


def _se_ratio(first: _Block, blocks: List[_Block], yml: Optional[dict],
              yml_path: str, notes: List[str]) -> float:
    widths = [first.se_channels] + [b.se_channels for b in blocks
                                    if b.kernels]
    said = (yml or {}).get('se_ratio')
    if not any(widths):
        if said:
            raise _Fail(f'se_ratio is {said} but the weights have no SE; '
                        'remove or replace it', yml_path)
        return 0.0
    if not all(widths):
        raise _Fail('SE weights in some blocks only: not an AtomNAS net')
    ratio = float(said) if said else widths[0] / first.in_channels
    spec_width = ArchSpec(1, 1, [], se_ratio=ratio).se_channels
    for name, b in [('features.1', first)] + [
            (f'features.{i + 2}', b) for i, b in enumerate(blocks)
            if b.kernels]:
        if b.se_channels != spec_width(b.in_channels):
            raise _Fail(f'{name}: SE width {b.se_channels} for '
                        f'{b.in_channels} input channels does not follow '
                        f'se_ratio {ratio:g} (round(ratio x input channels))')
    if not said:
        notes.append(f'se_ratio: {ratio:g} (SE widths / block inputs)')
    return ratio


def convert_authors_checkpoint(src: str, use_ema: bool = True,
                               act: Optional[str] = None,
                               yml_path: Optional[str] = None) -> Converted:
    """Read one of the authors' checkpoints and return it in our layout.

    Args:
        src: Their ``NAME.pt`` (read without running any of its code).
        use_ema: The EMA weights (the ones they evaluate), else ``model``'s.
        act: ``'relu'`` or ``'swish'``, when there is no yml to say.
        yml_path: Their ``NAME.yml``; default: beside ``src``. Without it
            the structure comes from the weights' shapes, and the strides
            from the paper's supernet (see :func:`_supernet_strides`).

    Raises:
        ConversionError: one line naming the file, what is wrong, the fix.
    """
    yml_path = yml_path or osp.splitext(src)[0] + '.yml'
    try:
        return _convert(src, use_ema, act, yml_path)
    except _Fail as e:
        raise ConversionError(f'{e.file or src}: {e}') from None
    except (IndexError, KeyError, RuntimeError, TypeError, ValueError) as e:
        # A tensor of a shape no AtomNAS net has (a 1-D "conv", ...).
        raise ConversionError(
            f'{src}: its weights do not have the shapes of an AtomNAS net '
            f'({type(e).__name__}: {str(e).splitlines()[0][:120]}); a '
            'damaged or foreign state dict') from None


def _load(src: str):
    if not osp.isfile(src):
        raise _Fail('no such file')
    try:
        return safe_torch_load(src)
    except UnsafePickleError as e:
        raise _Fail(f'refused: {e} (a crafted file?); nothing in it was run. '
                    'Use the checkpoint the authors published') from None
    except BrokenFileError as e:
        raise _Fail(f'{e}; download or copy it again') from None
    except OSError as e:
        raise _Fail(f'cannot be read ({e.strerror})') from None


def _convert(src: str, use_ema: bool, act: Optional[str],
             yml_path: str) -> Converted:
    if act not in (None, 'relu', 'swish'):
        raise _Fail(f'--act {act!r}: use relu or swish')
    ckpt = _load(src)
    weights, which = _weights(ckpt, use_ema)
    groups: Dict[int, Dict[str, Tensor]] = defaultdict(dict)
    fc = {}
    for key, value in weights.items():
        m = _FEATURE.match(key)
        if m:
            groups[int(m.group(1))][m.group(2)] = value
        elif key in ('classifier.1.weight', 'classifier.1.bias'):
            fc[key.rsplit('.', 1)[1]] = value
        else:
            raise _Fail(f'{key} is not part of the authors\' MobileNetSearched'
                        ': a foreign state dict')
    last = max(groups)
    missing = sorted(set(range(last + 1)) - set(groups))
    if missing or last < 2 or len(fc) != 2:
        raise _Fail(f'features.{missing[0] if missing else last + 1} or the '
                    'classifier is missing: a damaged or foreign state dict')
    stem, head = _Group(0, groups[0]), _Group(last, groups[last])
    backbone = {'stem.0.weight': stem.take('0.weight'),
                'head.0.weight': head.take('0.weight')}
    _bn_into(backbone, 'stem.1.', stem.bn('1.'))
    _bn_into(backbone, 'head.1.', head.bn('1.'))
    stem.done()
    head.done()
    first = _first_block(_Group(1, groups[1]))
    blocks = [_searched_block(_Group(i, groups[i])) for i in range(2, last)]
    stem_c = backbone['stem.0.weight'].shape[0]
    head_c = backbone['head.0.weight'].shape[0]
    num_classes = fc['weight'].shape[0]
    fused = {b.fused for b in [first] + blocks if b.kernels}
    if len(fused) != 1:
        raise _Fail('mixes fused and non-fused blocks: not one of the '
                    'authors\' nets')
    layout = 'InvertedResidualChannels' + ('Fused' if first.fused else '')
    notes = [f'layout: {layout}, {len(blocks)} searched blocks, '
             f'{num_classes} classes']
    yml = _read_yml(yml_path)
    if yml is not None:
        if yml.get('block') not in (None, layout):
            raise _Fail(f'block is {yml["block"]!r} but the weights are in '
                        'the other layout: remove or replace it', yml_path)
        strides = _check_yml(yml, yml_path, first, blocks, stem_c, head_c,
                             num_classes)
        notes.append(f'structure: from {yml_path}')
    else:
        strides = _infer_strides(blocks, notes, yml_path)
    activation = _activation(yml, yml_path, act, first.se is not None, notes)
    se_ratio = _se_ratio(first, blocks, yml, yml_path, notes)

    spec_dict = dict(
        stem_channels=stem_c,
        first_block=dict(out_channels=first.out_channels,
                         kernel_size=first.kernels[0][0]),
        blocks=[dict(in_channels=b.in_channels, out_channels=b.out_channels,
                     stride=s, kernels={str(k): n for k, n in b.kernels})
                for b, s in zip(blocks, strides)],
        head_channels=head_c, activation=activation, se_ratio=se_ratio)
    try:
        spec = load_spec(spec_dict)
    except SpecError as e:
        raise _Fail(f'the weights describe no valid AtomNAS net ({e})'
                    ) from None
    for key, value in first.tensors.items():
        backbone[f'first.{key}'] = value
    for i, b in enumerate(blocks):
        if not b.kernels:  # their empty block returns its input: x + 0
            backbone[f'blocks.{i}.bias'] = torch.zeros(b.out_channels)
        for key, value in b.tensors.items():
            backbone[f'blocks.{i}.{key}'] = value
    _check_fits(spec, backbone)
    state = {f'backbone.{k}': _own(v) for k, v in backbone.items()}
    state.update({f'head.fc.{k}': _own(v) for k, v in fc.items()})
    notes.append(f'weights: {which}')
    meta = {SPEC_META_KEY: spec.to_dict(), 'converted_from': dict(
        file=osp.basename(src), code='github.com/meijieru/AtomNAS',
        weights='ema' if use_ema else 'model',
        structure='yml' if yml is not None else 'inferred',
        epoch=ckpt.get('last_epoch') if isinstance(
            ckpt.get('last_epoch'), int) else None,
        bn_eps=AUTHORS_BN_EPS, num_classes=num_classes)}
    return Converted(spec, state, meta, notes)


def _infer_strides(blocks: List[_Block], notes: List[str],
                   yml_path: str) -> List[int]:
    table = _supernet_strides()
    strides = []
    for i, b in enumerate(blocks):
        if b.in_channels == b.out_channels:
            strides.append(1)
        elif (b.in_channels, b.out_channels) in table:
            strides.append(table[(b.in_channels, b.out_channels)])
        else:
            raise _Fail(f'features.{i + 2}: cannot tell its stride '
                        f'({b.in_channels}->{b.out_channels} is no width '
                        f'change of the paper\'s supernet); put the authors\' '
                        f'{osp.basename(yml_path)} beside it')
    down = [str(i) for i, s in enumerate(strides) if s == 2]
    notes.append(f'structure: inferred from the weights (no {yml_path}): '
                 'kernels and channels from the conv shapes; strides from '
                 'the paper\'s supernet (' + ', '.join(
                     f'{a}->{b}: {s}' for (a, b), s in sorted(table.items()))
                 + '; same width: 1): stride 2 at blocks '
                 + (', '.join(down) or 'none')
                 + f', total stride {2 * 2 ** len(down)}')
    return strides


def _own(t: Tensor) -> Tensor:
    """A contiguous CPU copy (not a view into the file's buffers); floats
    as float32."""
    t = t.detach().clone().contiguous()
    return t.float() if t.is_floating_point() else t


def _check_fits(spec: ArchSpec, backbone: Dict[str, Tensor]) -> None:
    """The converted weights load strictly into the net the spec builds."""
    from ..backbones import AtomNASNet
    net = AtomNASNet(spec, memory_format='contiguous')
    try:
        net.load_state_dict(backbone, strict=True)
    except (RuntimeError, SpecError) as e:
        detail = str(e).replace('\n', ' ').replace('\t', '')[:200]
        raise _Fail('its weights do not fit the net they describe '
                    f'({detail}): a damaged state dict') from None


def save_converted(converted: Converted, dst: str) -> str:
    """Write ``{'state_dict', 'meta'}`` atomically (a temporary file, then a
    rename: never a half-written checkpoint)."""
    folder = osp.dirname(osp.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    tmp = f'{dst}.tmp'
    torch.save(dict(state_dict=converted.state_dict, meta=converted.meta), tmp)
    os.replace(tmp, dst)
    return dst


def summary(converted: Converted, input_size: int = 224) -> str:
    """MACs and params of the converted net (the paper's convention)."""
    report = count(converted.spec, input_size,
                   converted.meta['converted_from']['num_classes'])
    return (f'{report.macs / 1e6:.1f}M MACs, {report.params / 1e6:.2f}M '
            f'params at {input_size}x{input_size}')
