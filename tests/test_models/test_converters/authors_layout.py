"""The authors' checkpoint layout (github.com/meijieru/AtomNAS), re-stated
for the tests independently of the converter: our net's weights written in
their layout, their checkpoint file as their training saves it, and a
functional forward pass over their weights as their blocks compute it."""
from __future__ import annotations

import contextlib
import sys
import types
from collections import OrderedDict
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from atomnas_mm.models import AtomNASNet, load_spec

BN = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')


class ScalarMeter:
    """Stands for their ``utils.meters.ScalarMeter``: pickled under that
    name, so reading the file meets a class it does not know."""

    def __init__(self, name):
        self.name, self.steps, self.values = name, 3, [0.5, 0.25]


ScalarMeter.__module__ = 'utils.meters'


@contextlib.contextmanager
def their_modules():
    """``utils.meters`` importable while saving, gone afterwards."""
    saved = {k: sys.modules.get(k) for k in ('utils', 'utils.meters')}
    pkg, mod = types.ModuleType('utils'), types.ModuleType('utils.meters')
    mod.ScalarMeter, pkg.meters = ScalarMeter, mod
    sys.modules.update({'utils': pkg, 'utils.meters': mod})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def random_weights(spec, num_classes: int, seed: int
                   ) -> Dict[str, torch.Tensor]:
    """Our classifier's weights (``backbone.``-less backbone keys plus
    ``fc.weight``/``fc.bias``), random, with random BN statistics of a
    sensible scale (statistics of a random batch, then perturbed)."""
    torch.manual_seed(seed)
    net = AtomNASNet(spec, norm_cfg=dict(type='BN', eps=1e-3),
                     memory_format='contiguous')
    net.init_weights()
    for name, p in net.named_parameters():
        if name.endswith('bn.weight') or '.1.weight' in name:
            p.data.uniform_(0.5, 1.5)  # BN gamma
        elif p.dim() == 1:
            p.data.normal_(0, 0.1)  # BN beta, SE biases
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative: the batch's own statistics
    net.train()
    with torch.no_grad():
        net(torch.randn(2, 3, 64, 64))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for k, v in state.items():
        if k.endswith('running_mean'):
            v.add_(0.1 * torch.randn_like(v) * v.abs().mean())
        elif k.endswith('running_var'):
            v.mul_(torch.empty_like(v).uniform_(0.8, 1.25))
        elif k.endswith('num_batches_tracked'):
            v.fill_(1234)
    head = spec.head_channels
    state['fc.weight'] = torch.randn(num_classes, head) / head ** 0.5
    state['fc.bias'] = 0.1 * torch.randn(num_classes)
    return state


def to_authors(ours: Dict[str, torch.Tensor], spec, fused: bool,
               orders: Optional[Dict[int, List[int]]] = None
               ) -> 'OrderedDict[str, torch.Tensor]':
    """Their state dict (no ``module.``) of our weights.

    Args:
        fused: The "+" layout (one expand conv, SE, project conv + BN)
            instead of the A/B/C one (per-kernel convs, summed, pw_bn).
        orders: Block index -> their kernel order (default ascending).
    """
    out = OrderedDict()
    spec = load_spec(spec)

    def bn(dst, src):
        for n in BN:
            out[dst + n] = ours[src + n]

    def se(dst, src, perm=None):
        if src + 'se.reduce.weight' not in ours:
            return
        r, e = ours[src + 'se.reduce.weight'], ours[src + 'se.expand.weight']
        eb = ours[src + 'se.expand.bias']
        if perm is not None:
            r, e, eb = r[:, perm], e[perm], eb[perm]
        out[dst + 'se_op.se_reduce.weight'] = r
        out[dst + 'se_op.se_reduce.bias'] = ours[src + 'se.reduce.bias']
        out[dst + 'se_op.se_expand.weight'] = e
        out[dst + 'se_op.se_expand.bias'] = eb

    out['features.0.0.weight'] = ours['stem.0.weight']
    bn('features.0.1.', 'stem.1.')
    f = 'features.1.'
    if fused:
        out[f + 'depth_ops.0.0.0.weight'] = ours['first.dw_conv.weight']
        bn(f + 'depth_ops.0.0.1.', 'first.dw_bn.')
        se(f, 'first.')
        out[f + 'project_conv.0.weight'] = ours['first.project_conv.weight']
        bn(f + 'project_conv.1.', 'first.project_bn.')
    else:
        out[f + 'ops.0.0.0.weight'] = ours['first.dw_conv.weight']
        bn(f + 'ops.0.0.1.', 'first.dw_bn.')
        out[f + 'ops.0.1.weight'] = ours['first.project_conv.weight']
        bn(f + 'pw_bn.', 'first.project_bn.')
    for i, b in enumerate(spec.blocks):
        f, o = f'features.{i + 2}.', f'blocks.{i}.'
        ks = (orders or {}).get(i, list(b.kernels))
        br = {k: f'{o}branches.k{k}.' for k in ks}
        if not ks:  # an empty block: their pw_bn is there but unused
            assert not fused, 'their fused block cannot be empty'
            for n in BN[:4]:
                out[f + 'pw_bn.' + n] = torch.rand(b.out_channels) + 0.5
            out[f + 'pw_bn.num_batches_tracked'] = torch.tensor(9)
        elif fused:
            out[f + 'expand_conv.0.weight'] = torch.cat(
                [ours[br[k] + 'expand_conv.weight'] for k in ks])
            for n in BN[:4]:
                out[f + 'expand_conv.1.' + n] = torch.cat(
                    [ours[br[k] + 'expand_bn.' + n] for k in ks])
            out[f + 'expand_conv.1.num_batches_tracked'] = \
                ours[br[ks[0]] + 'expand_bn.num_batches_tracked']
            for j, k in enumerate(ks):
                out[f + f'depth_ops.{j}.1.0.weight'] = \
                    ours[br[k] + 'dw_conv.weight']
                bn(f + f'depth_ops.{j}.1.1.', br[k] + 'dw_bn.')
            # Ours concatenates for SE in ascending kernel order.
            start = {}
            for k in sorted(ks):
                start[k] = sum(b.kernels[q] for q in sorted(ks) if q < k)
            perm = torch.cat([torch.arange(start[k], start[k] + b.kernels[k])
                              for k in ks])
            se(f, o, perm)
            out[f + 'project_conv.0.weight'] = torch.cat(
                [ours[br[k] + 'project_conv.weight'] for k in ks], dim=1)
            bn(f + 'project_conv.1.', o + 'project_bn.')
        else:
            for j, k in enumerate(ks):
                q, r = f + f'ops.{j}.', br[k]
                out[q + '0.0.weight'] = ours[r + 'expand_conv.weight']
                bn(q + '0.1.', r + 'expand_bn.')
                out[q + '1.0.weight'] = ours[r + 'dw_conv.weight']
                bn(q + '1.1.', r + 'dw_bn.')
                out[q + '2.weight'] = ours[r + 'project_conv.weight']
            bn(f + 'pw_bn.', o + 'project_bn.')
    f = f'features.{len(spec.blocks) + 2}.'
    out[f + '0.weight'] = ours['head.0.weight']
    bn(f + '1.', 'head.1.')
    out['classifier.1.weight'] = ours['fc.weight']
    out['classifier.1.bias'] = ours['fc.bias']
    return out


def authors_yml(spec, num_classes: int,
                orders: Optional[Dict[int, List[int]]] = None) -> dict:
    """The model keyword arguments their code writes beside a checkpoint."""
    spec = load_spec(spec)
    rows = [[spec.first_channels, 1, 1, [spec.first_kernel],
             [spec.stem_channels], False]]
    for i, b in enumerate(spec.blocks):
        ks = (orders or {}).get(i, list(b.kernels))
        rows.append([b.out_channels, 1, b.stride, ks,
                     [b.kernels[k] for k in ks], True])
    return {'input_channel': spec.stem_channels,
            'last_channel': spec.head_channels, 'width_mult': 1.0,
            'round_nearest': 8,
            'active_fn': {'relu': 'nn.ReLU', 'swish': 'nn.Swish'}[
                spec.activation],
            'num_classes': num_classes, 'inverted_residual_setting': rows}


def ema_of(weights: Dict[str, torch.Tensor], seed: int = 1
           ) -> 'OrderedDict[str, torch.Tensor]':
    """An EMA shadow that differs from the weights: parameters and running
    statistics, never num_batches_tracked (as theirs)."""
    g = torch.Generator().manual_seed(seed)
    shadow = OrderedDict()
    for k, v in weights.items():
        if k.endswith('num_batches_tracked'):
            continue
        noise = torch.randn(v.shape, generator=g)
        shadow[k] = v * (1 + 0.05 * noise.abs()) if k.endswith(
            'running_var') else v + 0.05 * noise * v.abs().mean()
    return shadow


def save_authors_checkpoint(path: str, weights, shadow=None, yml=None,
                            legacy: bool = False, ddp: bool = True) -> None:
    """Save as their ``save_status`` does: ``model`` (with ``module.``
    under DDP), ``optimizer``, ``ema``, epoch, best error (a tensor) and
    their meters; ``str(model_kwparams)`` into the ``.yml`` beside it."""
    model = OrderedDict((('module.' if ddp else '') + k, v)
                        for k, v in weights.items())
    first = next(iter(weights.values()))
    ckpt = {
        'model': model,
        'optimizer': {'state': {0: {'step': 7, 'square_avg': first * 0}},
                      'param_groups': [{'lr': 0.1, 'alpha': 0.9,
                                        'params': [0]}]},
        'ema': None if shadow is None else {
            'info': {k: {'num_updates': 7, 'last_momemtum': 0.9,
                         'zero_init': False, 'compress_masked': False}
                     for k in shadow},
            'shadow': shadow,
            'param': {'momentum': 0.9999, 'zero_debias': False}},
        'last_epoch': 349,
        'best_val': torch.tensor(0.241),
        'meters': ({'loss': ScalarMeter('train_loss')},
                   {'top1_error': ScalarMeter('val_top1_error')}),
    }
    with their_modules():
        torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    if yml is not None:
        with open(path[:-len('.pt')] + '.yml', 'w') as f:
            f.write(str(yml))


def authors_forward(w: Dict[str, torch.Tensor], yml: dict, fused: bool,
                    x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Logits of their eval-mode net: stem, blocks as their
    InvertedResidualChannels(Fused).forward compute, head, pool, linear."""
    swish = yml['active_fn'] == 'nn.Swish'

    def act(t):
        return t * torch.sigmoid(t) if swish else F.relu(t)

    def bn(t, p):
        return F.batch_norm(t, w[p + 'running_mean'], w[p + 'running_var'],
                            w[p + 'weight'], w[p + 'bias'], False, 0.0, eps)

    def conv(t, weight, stride=1, groups=1):
        return F.conv2d(t, weight, None, stride, weight.shape[-1] // 2, 1,
                        groups)

    def cbr(t, p, stride=1, groups=1):  # their ConvBNReLU
        return act(bn(conv(t, w[p + '0.weight'], stride, groups), p + '1.'))

    def se(t, p):
        if p + 'se_op.se_reduce.weight' not in w:
            return t
        s = t.mean((2, 3), keepdim=True)
        s = act(F.conv2d(s, w[p + 'se_op.se_reduce.weight'],
                         w[p + 'se_op.se_reduce.bias']))
        s = F.conv2d(s, w[p + 'se_op.se_expand.weight'],
                     w[p + 'se_op.se_expand.bias'])
        return torch.sigmoid(s) * t

    x = cbr(x, 'features.0.', 2)
    cin, idx = yml['input_channel'], 1
    for c, n, s, ks, hs, expand in yml['inverted_residual_setting']:
        for r in range(n):
            stride, p = (s if r == 0 else 1), f'features.{idx}.'
            if fused:
                h = cbr(x, p + 'expand_conv.') if expand else x
                parts, start = [], 0
                for j, hd in enumerate(hs):
                    part = h[:, start:start + hd] if expand else h
                    start += hd
                    parts.append(cbr(part, p + f'depth_ops.{j}.'
                                     f'{1 if expand else 0}.', stride, hd))
                y = se(torch.cat(parts, 1), p)
                y = bn(conv(y, w[p + 'project_conv.0.weight']),
                       p + 'project_conv.1.')
            elif not hs:  # their block without ops returns its input
                y = None
            else:
                y = 0
                for j, hd in enumerate(hs):
                    q = p + f'ops.{j}.'
                    if expand:
                        t = cbr(cbr(x, q + '0.'), q + '1.', stride, hd)
                        y = y + conv(t, w[q + '2.weight'])
                    else:
                        t = cbr(x, q + '0.', stride, hd)
                        y = y + conv(t, w[q + '1.weight'])
                y = bn(y, p + 'pw_bn.')
            if y is not None:
                x = x + y if stride == 1 and cin == c else y
            cin, idx = c, idx + 1
    x = cbr(x, f'features.{idx}.').mean((2, 3))
    return F.linear(x, w['classifier.1.weight'], w['classifier.1.bias'])
