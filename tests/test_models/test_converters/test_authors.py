"""tools/model_converters/atomnas_to_mmpretrain.py on checkpoints in the
authors' layout (written by authors_layout.py, not by the converter): the
converted classifier gives their net's logits, for the published A/B/C
(non-fused) and A+/B+/C+ (fused, SE 0.5, Swish) nets and small variants;
--no-ema gives the raw weights; every bad input is one line."""
import importlib.util
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from atomnas_mm.models import load_spec
from tests.conftest import ROOT
from tests.test_models.test_converters.authors_layout import (
    authors_forward, authors_yml, ema_of, random_weights,
    save_authors_checkpoint, to_authors)

_tool = importlib.util.spec_from_file_location(
    'atomnas_to_mmpretrain',
    osp.join(ROOT, 'tools', 'model_converters', 'atomnas_to_mmpretrain.py'))
converter = importlib.util.module_from_spec(_tool)
_tool.loader.exec_module(converter)

# Stem 16 and the supernet's widths, so strides can be inferred without yml;
# block 2 is empty (their non-fused block without ops), block 1 lacks k5.
SMALL = dict(
    stem_channels=16, first_block=dict(out_channels=16, kernel_size=3),
    blocks=[dict(in_channels=16, out_channels=24, stride=2,
                 kernels={'3': 8, '5': 6, '7': 4}),
            dict(in_channels=24, out_channels=24, stride=1,
                 kernels={'3': 10, '7': 5}),
            dict(in_channels=24, out_channels=24, stride=1, kernels={}),
            dict(in_channels=24, out_channels=40, stride=2,
                 kernels={'3': 12, '5': 12, '7': 12})],
    head_channels=64)


def _spec(name, plus):
    spec = load_spec(name if isinstance(name, str) else dict(name))
    if plus:
        spec.activation, spec.se_ratio = 'swish', 0.5
    return spec


def _write(tmp_path, spec, num_classes=1000, plus=False, yml=True,
           orders=None, legacy=False, ddp=True, seed=0):
    """Our random net in their layout, saved as their training saves it.
    Returns (path, our weights, their weights, their EMA shadow, yml)."""
    ours = random_weights(spec, num_classes, seed)
    theirs = to_authors(ours, spec, fused=plus, orders=orders)
    shadow = ema_of(theirs)
    kw = authors_yml(spec, num_classes, orders)
    path = str(tmp_path / 'best_model.pt')
    save_authors_checkpoint(path, theirs, shadow, kw if yml else None,
                            legacy=legacy, ddp=ddp)
    return path, ours, theirs, shadow, kw


def _classifier(dst, num_classes, head_channels):
    """Our ImageClassifier from the converted file, through
    mmpretrain.apis.init_model (the net built from the file's spec)."""
    from mmpretrain.apis import init_model
    cfg = Config(dict(default_scope='mmpretrain', model=dict(
        type='ImageClassifier',
        backbone=dict(type='atomnas_mm.AtomNASNet', arch=dst,
                      norm_cfg=dict(type='BN', eps=1e-3)),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='atomnas_mm.DropoutLinearClsHead',
                  num_classes=num_classes, in_channels=head_channels,
                  loss=dict(type='CrossEntropyLoss')))))
    return init_model(cfg, dst).eval()


def _rel_err(got, ref):
    return ((got.double() - ref).abs().max() / ref.abs().max()).item()


def _logit_error(dst, weights, kw, fused, num_classes, head_channels,
                 size=64):
    """Max relative difference between our converted classifier and their
    net (float64 reference) on the same input."""
    model = _classifier(dst, num_classes, head_channels)
    x = torch.randn(1, 3, size, size,
                    generator=torch.Generator().manual_seed(3))
    w64 = {k: v.double() if v.is_floating_point() else v
           for k, v in weights.items()}
    with torch.no_grad():
        ref = authors_forward(w64, kw, fused, x.double())
        got = model(x, mode='tensor')
    return _rel_err(got, ref)


@pytest.mark.parametrize('name,plus', [
    ('atomnas_a', False), ('atomnas_b', False), ('atomnas_c', False),
    ('atomnas_a', True), ('atomnas_b', True), ('atomnas_c', True)],
    ids=['A', 'B', 'C', 'A+', 'B+', 'C+'])
def test_published_nets_give_the_authors_logits(name, plus, tmp_path,
                                                capsys):
    spec = _spec(name, plus)
    src, ours, theirs, shadow, kw = _write(tmp_path, spec, plus=plus)
    dst = str(tmp_path / 'converted.pth')
    converter.main([src, dst])
    assert f'structure: from {src[:-3]}.yml' in capsys.readouterr().out
    ema_weights = {k: shadow.get(k, v) for k, v in theirs.items()}
    err = _logit_error(dst, ema_weights, kw, plus, 1000, 1280)
    assert err < 1e-4
    saved = torch.load(dst, weights_only=True)
    # The EMA weights, not the raw ones, arrived.
    stem = saved['state_dict']['backbone.stem.0.weight']
    assert torch.equal(stem, shadow['features.0.0.weight'])
    assert not torch.allclose(stem, theirs['features.0.0.weight'], rtol=1e-2)
    assert load_spec(saved['meta']['atomnas_spec']) == spec
    assert saved['meta']['converted_from']['weights'] == 'ema'

    # Without the yml the structure comes from the weights and the paper's
    # supernet: the same net and the same tensors.
    os.remove(src[:-3] + '.yml')
    dst2 = str(tmp_path / 'inferred.pth')
    converter.main([src, dst2])
    out = capsys.readouterr().out
    assert 'structure: inferred from the weights' in out
    assert 'stride 2 at blocks 0, 4, 8, 16, total stride 32' in out
    assert ('activation: swish (inferred' if plus else
            'activation: relu (inferred') in out
    inferred = torch.load(dst2, weights_only=True)
    assert load_spec(inferred['meta']['atomnas_spec']) == spec
    assert inferred['state_dict'].keys() == saved['state_dict'].keys()
    for k, v in saved['state_dict'].items():
        assert torch.equal(v, inferred['state_dict'][k]), k


@pytest.mark.parametrize('case', ['nonfused_identity', 'fused_orders_legacy',
                                  'fused_no_yml_act'])
def test_small_variants(case, tmp_path):
    """Kernel orders other than ascending, a dead kernel, an empty block,
    the legacy file format, no DDP prefix, --act without yml."""
    plus = case.startswith('fused')
    small = dict(SMALL)
    if plus:  # their fused block cannot be empty
        small['blocks'] = [b for b in SMALL['blocks'] if b['kernels']]
    spec = _spec(small, plus)
    orders = {0: [7, 3, 5], 1: [7, 3]} if plus else {1: [7, 3]}
    act = None
    if case == 'fused_no_yml_act':  # an SE net the user says is ReLU
        spec.activation, act = 'relu', 'relu'
    src, ours, theirs, shadow, kw = _write(
        tmp_path, spec, num_classes=10, plus=plus, orders=orders,
        legacy='legacy' in case, ddp='legacy' not in case,
        yml=case != 'fused_no_yml_act')
    dst = str(tmp_path / 'converted.pth')
    converter.main([src, dst] + (['--act', act] if act else []))
    err = _logit_error(dst, {k: shadow.get(k, v) for k, v in theirs.items()},
                          kw, plus, 10, 64, size=32)
    assert err < 1e-4, err


def test_no_ema_gives_the_raw_weights(tmp_path):
    spec = _spec(SMALL, False)
    src, ours, theirs, shadow, kw = _write(tmp_path, spec, num_classes=10)
    raw, ema = str(tmp_path / 'raw.pth'), str(tmp_path / 'ema.pth')
    converter.main([src, raw, '--no-ema'])
    converter.main([src, ema])
    raw = torch.load(raw, weights_only=True)['state_dict']
    ema = torch.load(ema, weights_only=True)['state_dict']
    expected = {('head.fc.' + k[3:] if k.startswith('fc.') else
                 'backbone.' + k): v for k, v in ours.items()}
    assert raw.keys() == expected.keys()
    for k, v in expected.items():
        assert torch.equal(raw[k], v), k
    # Every averaged tensor differs; num_batches_tracked is the model's (and
    # the empty block's constant, which they do not have, is 0).
    averaged = [k for k in expected if not k.endswith('num_batches_tracked')
                and k != 'backbone.blocks.2.bias']
    differ = [k for k in expected if not torch.equal(ema[k], expected[k])]
    assert differ == averaged
    assert torch.equal(ema['backbone.stem.1.num_batches_tracked'],
                       torch.tensor(1234))


def _error(argv):
    with pytest.raises(SystemExit) as e:
        converter.main(argv)
    msg = str(e.value.code)
    assert msg.startswith('error: ') and '\n' not in msg, msg
    return msg


def test_bad_inputs_are_one_line(tmp_path):
    spec = _spec(SMALL, False)
    src, ours, theirs, shadow, kw = _write(tmp_path, spec, num_classes=10)
    dst = str(tmp_path / 'out.pth')
    missing = str(tmp_path / 'nope.pt')
    assert _error([missing, dst]) == f'error: {missing}: no such file'

    empty = tmp_path / 'empty.pt'
    empty.write_bytes(b'')
    assert 'the file is empty' in _error([str(empty), dst])

    for legacy in (False, True):
        cut = str(tmp_path / f'cut{legacy}.pt')
        save_authors_checkpoint(cut, theirs, shadow, legacy=legacy)
        with open(cut, 'r+b') as f:
            f.truncate(os.path.getsize(cut) // 2)
        msg = _error([cut, dst])
        assert msg.startswith(f'error: {cut}: ') and 'truncated' in msg, msg

    text = tmp_path / 'notes.pt'
    text.write_text('hello')
    assert 'not a torch checkpoint' in _error([str(text), dst])

    resnet = str(tmp_path / 'resnet.pt')
    torch.save({'conv1.weight': torch.zeros(1), 'fc.bias': torch.zeros(1)},
               resnet)
    assert "not a checkpoint of the authors' AtomNAS code" in \
        _error([resnet, dst])

    converter.main([src, dst])  # a converted file is refused as input
    assert 'already an mmpretrain checkpoint' in _error([dst, dst + '2'])

    # The yml of another net beside the weights: named, not trusted.
    other = authors_yml(_spec('atomnas_a', False), 10)
    yml = src[:-3] + '.yml'
    with open(yml, 'w') as f:
        f.write(str(other))
    msg = _error([src, dst])
    assert msg.startswith(f'error: {yml}: ') and 'another net' in msg, msg

    # A yml is parsed as a literal, never run.
    marker = tmp_path / 'MARKER'
    with open(yml, 'w') as f:
        f.write(f"__import__('os').system('touch {marker}')")
    assert 'not the Python literal' in _error([src, dst])
    assert not marker.exists()

    # No EMA in the file: say how to convert the raw weights.
    save_authors_checkpoint(src, theirs, None)
    os.remove(yml)
    assert '--no-ema' in _error([src, dst])
    converter.main([src, dst, '--no-ema'])

    # Widths the paper's supernet never changes between: strides unknown.
    odd = load_spec(dict(SMALL, stem_channels=8, first_block=dict(
        out_channels=8), blocks=[dict(SMALL['blocks'][0], in_channels=8)]
        + SMALL['blocks'][1:]))
    (tmp_path / 'odd').mkdir()
    src2, *_ = _write(tmp_path / 'odd', odd, num_classes=10, yml=False)
    msg = _error([src2, dst])
    assert 'cannot tell its stride' in msg and 'best_model.yml' in msg, msg
