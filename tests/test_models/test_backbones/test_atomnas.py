import math

import pytest
import torch
from mmengine.model import revert_sync_batchnorm
from torch.nn.modules.batchnorm import _BatchNorm

from atomnas_mm.models import AtomNASNet, load_spec
from atomnas_mm.models.arch import count
from atomnas_mm.utils.complexity import classifier_from_spec, measure


def test_every_out_index_shape():
    net = AtomNASNet('atomnas_c', out_indices=range(8)).eval()
    with torch.no_grad():
        outs = net(torch.randn(1, 3, 224, 224))
    strides = [2, 4, 8, 16, 16, 32, 32, 32]
    channels = [16, 24, 40, 80, 96, 192, 320, 1280]
    assert net.out_channels == channels
    for o, s, c in zip(outs, strides, channels):
        assert o.shape == (1, c, 224 // s, 224 // s)


def test_out_indices_subset_negative_and_invalid(tiny_spec):
    net = AtomNASNet(tiny_spec, out_indices=(1, -1))
    outs = net(torch.randn(2, 3, 32, 32))
    assert [o.shape[1] for o in outs] == net.out_channels == [16, 64]
    with pytest.raises(ValueError, match='out_indices'):
        AtomNASNet(tiny_spec, out_indices=(4, ))


def test_default_output_is_head(tiny_spec):
    outs = AtomNASNet(tiny_spec)(torch.randn(1, 3, 32, 32))
    assert len(outs) == 1 and outs[0].shape == (1, 64, 4, 4)


def test_spec_model_spec_round_trip():
    for name in ('supernet_stem16', 'atomnas_a', 'atomnas_c'):
        assert AtomNASNet(name).arch_spec == load_spec(name)
    spec = load_spec('atomnas_b')
    spec.se_ratio, spec.activation = 0.5, 'swish'
    assert AtomNASNet(spec).arch_spec == spec


def test_built_net_counts_match_cost_model():
    for name in ('supernet', 'atomnas_a'):
        r = count(name)
        assert measure(classifier_from_spec(name)) == (
            r.macs, r.params, r.params_with_bn)


def test_frozen_stages(tiny_spec):
    net = AtomNASNet(tiny_spec, frozen_stages=1)
    net.train()
    frozen = [net.stem, net.first, net.blocks[0], net.blocks[1]]
    for m in frozen:
        assert not m.training
        assert all(not p.requires_grad for p in m.parameters())
    for m in (net.blocks[2], net.blocks[3], net.head):
        assert m.training
        assert all(p.requires_grad for p in m.parameters())
    with pytest.raises(ValueError, match='frozen_stages'):
        AtomNASNet(tiny_spec, frozen_stages=4)


@pytest.mark.parametrize('norm', ['BN', 'SyncBN', 'converted'])
def test_norm_eval(tiny_spec, norm):
    cfg = dict(type='BN' if norm == 'converted' else norm)
    net = AtomNASNet(tiny_spec, norm_cfg=cfg, norm_eval=True)
    if norm == 'converted':
        net = revert_sync_batchnorm(
            AtomNASNet(tiny_spec, norm_cfg=dict(type='SyncBN'),
                       norm_eval=True))
    net.train()
    bns = [m for m in net.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    assert net.blocks[0].branches['k3'].expand_conv.training
    if norm == 'converted':
        # Running stats do not move in a training forward.
        before = bns[0].running_mean.clone()
        net(torch.randn(2, 3, 32, 32))
        assert torch.equal(before, bns[0].running_mean)


def test_default_init():
    net = AtomNASNet('supernet')
    net.init_weights()
    dw = net.blocks[20].branches['k7'].dw_conv.weight  # 1920 x 1 x 7 x 7
    assert abs(dw.std().item() - math.sqrt(2 / 49)) < 0.01
    pw = net.head[0].weight  # 1280 x 320
    assert abs(pw.std().item() - math.sqrt(2 / 1280)) < 0.002
    bn = net.blocks[0].branches['k3'].dw_bn
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_memory_formats_agree(tiny_spec):
    torch.manual_seed(0)
    a = AtomNASNet(tiny_spec, memory_format='channels_last').eval()
    b = AtomNASNet(tiny_spec, memory_format='contiguous').eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(a(x)[0], b(x)[0], atol=1e-5)
    assert a.blocks[0].branches['k5'].dw_conv.weight.is_contiguous(
        memory_format=torch.channels_last)
    with pytest.raises(ValueError, match='memory_format'):
        AtomNASNet(tiny_spec, memory_format='nhwc')


def test_classifier_with_atomnas_c_trains_a_step():
    from mmengine.optim import OptimWrapper
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='atomnas_mm.AtomNASNet', arch='atomnas_c'),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=5, in_channels=1280),
            data_preprocessor=dict(type='ClsDataPreprocessor')))
    model.init_weights()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    data = dict(inputs=[torch.randint(0, 255, (3, 224, 224),
                                      dtype=torch.uint8) for _ in range(2)],
                data_samples=[DataSample().set_gt_label(i) for i in (1, 3)])
    w = model.backbone.blocks[5].branches['k5'].dw_conv.weight.clone()
    losses = model.train_step(data, wrapper)
    assert torch.isfinite(losses['loss'])
    assert not torch.equal(w, model.backbone.blocks[5].branches['k5'].dw_conv.weight)
