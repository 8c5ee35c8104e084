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


# ---------------------------------------------------------------- surgery
def _random_stats(net):
    """BN statistics and affine parameters far from their defaults, so a
    constant that a change drops would show."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * .1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + .5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + .5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * .5)


def test_dead_residual_block_keeps_the_net_output():
    from atomnas_mm.models.layers import IdentityBlock
    torch.manual_seed(0)
    net = AtomNASNet('atomnas_a')
    net.init_weights()
    _random_stats(net)
    i = 1  # 24 -> 24, stride 1: a residual block
    assert net.blocks[i].has_residual
    for bn in net.blocks[i].importance_bns().values():
        bn.weight.data.zero_()
    net.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = net(x)[0]
        records = net.keep_atoms({i: {}})
        after = net(x)[0]
    assert isinstance(net.blocks[i], IdentityBlock)
    assert net.arch_spec.blocks[i].is_identity
    assert records and all(r.new is None for r in records)
    assert (after - before).abs().max() <= 1e-5 * before.abs().max()
    # The constant survives a save and a load into a net of the new spec.
    fresh = AtomNASNet(net.arch_spec).eval()
    fresh.load_state_dict(net.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.allclose(fresh(x)[0], after, atol=1e-5)


def test_keep_atoms_checks_every_block_before_changing_any(tiny_spec):
    net = AtomNASNet(tiny_spec)
    before = net.arch_spec
    with pytest.raises(ValueError, match='no residual'):
        net.keep_atoms({1: {3: [0]}, 2: {}})  # block 2 has no residual
    with pytest.raises(ValueError, match='out of range'):
        net.keep_atoms({0: {3: [0]}, 1: {3: [99]}})
    assert net.arch_spec == before


# ------------------------------------------------------- partial state dicts
def _without(state, fragment):
    return {k: v for k, v in state.items() if fragment not in k}


@pytest.mark.parametrize('fragment', [
    'blocks.1.',  # a whole residual block
    'blocks.2.',  # a whole block without residual
    'blocks.1.branches.k5.',  # one kernel
    'blocks.3.branches.k7.dw_conv.weight',  # one weight of one kernel
])
def test_partial_state_dict_reports_missing_keys(tiny_spec, fragment):
    full = AtomNASNet(tiny_spec).state_dict()
    partial = _without(full, fragment)
    # (torch never reports a BN's num_batches_tracked missing)
    missing = sorted(k for k in set(full) - set(partial)
                     if not k.endswith('num_batches_tracked'))
    net = AtomNASNet(tiny_spec)
    with pytest.raises(RuntimeError, match='Missing key'):
        net.load_state_dict(partial, strict=True)
    net = AtomNASNet(tiny_spec)
    result = net.load_state_dict(partial, strict=False)
    assert sorted(result.missing_keys) == missing
    # Nothing was dropped or turned into the identity for want of keys.
    assert net.arch_spec == load_spec(tiny_spec)


def test_shrunk_state_dict_reshapes_only_complete_kernels(tiny_spec):
    src = AtomNASNet(tiny_spec)
    src.keep_atoms({1: {3: range(5), 5: range(16), 7: range(2)},
                    3: {3: [0, 4], 5: [], 7: range(24)}})
    state = src.state_dict()
    # Complete kernels: the structure follows their shapes, weights equal.
    net = AtomNASNet(tiny_spec)
    net.load_state_dict(_without(state, 'blocks.3.'), strict=False)
    assert net.arch_spec.blocks[1].kernels == {3: 5, 5: 16, 7: 2}
    assert net.arch_spec.blocks[3].kernels == {3: 24, 5: 24, 7: 24}
    # Block 3's k5 died in the source: absent keys keep the kernel, which
    # is reported missing; a strict load fails.
    net = AtomNASNet(tiny_spec)
    result = net.load_state_dict(state, strict=False)
    assert net.arch_spec.blocks[3].kernels == {3: 2, 5: 24, 7: 24}
    assert any('blocks.3.branches.k5.' in k for k in result.missing_keys)
    with pytest.raises(RuntimeError, match='Missing key'):
        AtomNASNet(tiny_spec).load_state_dict(state, strict=True)
    # Built from the saved spec (as every loader with the spec does), it
    # loads strictly and computes the same.
    net = AtomNASNet(src.arch_spec)
    net.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 32, 32)
    src.eval(), net.eval()
    with torch.no_grad():
        assert torch.equal(src(x)[0], net(x)[0])


# ---------------------------------------------------------------- with_cp
def _step(net, x, autocast=False):
    net.train()
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        y = net(x)[0]
    y.float().square().mean().backward()
    return {n: p.grad.clone() for n, p in net.named_parameters()}


@pytest.mark.parametrize('autocast', [False, True])
def test_with_cp_gives_the_same_gradients_and_statistics(tiny_spec,
                                                         autocast):
    import copy
    torch.manual_seed(0)
    plain = AtomNASNet(tiny_spec)
    plain.init_weights()
    # Shrunk first (a kernel gone, a block made identity): checkpointing
    # wraps whatever the blocks are now.
    plain.keep_atoms({1: {}, 2: {3: [0, 4, 5], 5: range(16)}})
    cp = copy.deepcopy(plain)
    cp.with_cp = True
    x = torch.randn(4, 3, 32, 32)
    g_plain, g_cp = _step(plain, x, autocast), _step(cp, x, autocast)
    tol = dict(rtol=1e-2, atol=1e-3) if autocast else dict(rtol=1e-5,
                                                           atol=1e-7)
    for name, g in g_plain.items():
        assert torch.allclose(g, g_cp[name], **tol), name
    # BN statistics were updated once, not again by the recomputation.
    for (name, a), (_, b) in zip(plain.named_buffers(), cp.named_buffers()):
        assert torch.allclose(a.float(), b.float()), name
    assert int(cp.blocks[2].branches['k3'].dw_bn.num_batches_tracked) == 1


def test_the_last_pretrained_entry_decides_structure_and_weights(tmp_path):
    """mmengine applies init_cfg entries in order, so the last file's
    weights are the ones the net ends with: it is built to that file's
    spec too (one rule, models.resolve.backbone_spec)."""
    from atomnas_mm.engine.search import save_deploy_checkpoint
    paths = {}
    for name in ('atomnas_a', 'atomnas_c'):
        torch.manual_seed(len(name))
        net = AtomNASNet(name)
        net.init_weights()
        paths[name] = save_deploy_checkpoint(
            net.state_dict(), net.arch_spec, str(tmp_path / f'{name}.pth'))
    net = AtomNASNet(arch=None, init_cfg=[
        dict(type='Pretrained', checkpoint=paths['atomnas_a']),
        dict(type='Pretrained', checkpoint=paths['atomnas_c'])])
    assert net.arch_spec == load_spec('atomnas_c')
    net.init_weights()
    saved = torch.load(paths['atomnas_c'], weights_only=True)['state_dict']
    for k, v in net.state_dict().items():
        assert torch.equal(v, saved[k]), k
