"""The fused inference form: exact on random nets and on a trained one."""
import copy
import os.path as osp

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from atomnas_mm.models import AtomNASNet, count, load_spec
from atomnas_mm.models.checkpoint import CheckpointError
from atomnas_mm.models.deploy import (DEPLOY_DEFAULTS, FuseError,
                                      FusedAtomicBlock, fold_conv_bn)
from atomnas_mm.models.deploy.fold import group_sizes, pad_kernel
from atomnas_mm.models.layers import IdentityBlock
from tests.conftest import TINY_SPEC

ALL_STAGES = (0, 1, 2, 3)
LAYOUTS = [('split', 'split', 'split'), ('split', 'split', 'merged'),
           ('merged', 'split', 'split'), ('merged', 'split', 'merged'),
           ('merged', 'merged', 'merged')]


def spec_with_identities():
    """Odd atom counts, a single-kernel block, identity blocks first (kept)
    and inside stages (folded away), one of them a stage's last block."""
    return dict(
        stem_channels=8,
        first_block=dict(out_channels=8, kernel_size=3),
        blocks=[
            dict(in_channels=8, out_channels=8, stride=1, kernels={}),
            dict(in_channels=8, out_channels=16, stride=2,
                 kernels={'3': 5, '5': 3, '7': 11}),
            dict(in_channels=16, out_channels=16, stride=1, kernels={}),
            dict(in_channels=16, out_channels=16, stride=1, kernels={}),
            dict(in_channels=16, out_channels=16, stride=1,
                 kernels={'5': 7}),
            dict(in_channels=16, out_channels=24, stride=2,
                 kernels={'3': 9, '7': 6}),
            dict(in_channels=24, out_channels=24, stride=1, kernels={}),
        ],
        head_channels=40)


def randomize(net, seed=0):
    """Random BN statistics and affines, random identity constants."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, _BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
            elif isinstance(m, IdentityBlock):
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
    return net


def build(arch, se=False, out_indices=ALL_STAGES, seed=0):
    torch.manual_seed(seed)
    net = AtomNASNet(copy.deepcopy(arch), out_indices=out_indices,
                     act='swish' if se else None,
                     se_ratio=0.5 if se else None)
    net.init_weights()
    return randomize(net, seed).eval()


def rel_err(ref, out):
    assert len(ref) == len(out)
    return max(((r - o).abs().max() / r.abs().max()).item()
               for r, o in zip(ref, out))


def check_exact(net, x, **options):
    with torch.no_grad():
        ref = net(x)
        net.switch_to_deploy(**options)
        out = net(x)
    for r, o in zip(ref, out):
        assert r.shape == o.shape
    assert rel_err(ref, out) <= 1e-4
    return net


# ------------------------------------------------------------- pure parts
def test_fold_conv_bn_is_bn_of_conv():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=True)
    bn = randomize(nn.Sequential(nn.BatchNorm2d(6, eps=1e-3)))[0].eval()
    w, b = fold_conv_bn(conv.weight, bn, conv.bias)
    assert w.dtype == b.dtype == torch.float64
    x = torch.randn(2, 4, 5, 5)
    ref = bn(conv(x))
    out = nn.functional.conv2d(x.double(), w, b, padding=1)
    assert torch.allclose(out.float(), ref, atol=1e-5)


def test_fold_refuses_what_has_no_affine_form():
    conv = nn.Conv2d(4, 4, 1)
    with pytest.raises(FuseError, match='GroupNorm'):
        fold_conv_bn(conv.weight, nn.GroupNorm(2, 4), where='x.bn')
    with pytest.raises(FuseError, match='track_running_stats'):
        fold_conv_bn(conv.weight,
                     nn.BatchNorm2d(4, track_running_stats=False))


def test_padded_kernel_and_groups():
    w = torch.randn(3, 1, 3, 3)
    p = pad_kernel(w, 7)
    assert p.shape == (3, 1, 7, 7) and p[..., 2:5, 2:5].equal(w)
    assert (p != 0).sum() == (w != 0).sum()
    x = torch.randn(1, 3, 9, 9)
    for s in (1, 2):
        assert torch.allclose(
            nn.functional.conv2d(x, w, stride=s, padding=1, groups=3),
            nn.functional.conv2d(x, p, stride=s, padding=3, groups=3),
            atol=1e-6)
    assert group_sizes([5, 3, 11], 8, per_kernel=True) == [8, 8, 16]
    assert group_sizes([5, 3, 11], 8, per_kernel=False) == [5, 3, 16]
    assert group_sizes([5, 3, 11], 1, per_kernel=True) == [5, 3, 11]


# ------------------------------------------------------------- exactness
@pytest.mark.parametrize('arch', ['tiny', 'identities'])
@pytest.mark.parametrize('se', [False, True])
@pytest.mark.parametrize('divisor', [1, 8, 16])
def test_fused_equals_eval_model_default_layout(arch, se, divisor):
    arch = TINY_SPEC if arch == 'tiny' else spec_with_identities()
    net = build(arch, se)
    check_exact(net, torch.randn(2, 3, 32, 32), divisor=divisor)
    for block in net.blocks:
        if isinstance(block, FusedAtomicBlock):
            # One conv over all atoms: its width is padded.
            assert sum(block.group_sizes) % divisor == 0


@pytest.mark.parametrize('layout', LAYOUTS, ids=lambda x: x)
@pytest.mark.parametrize('se', [False, True])
def test_every_layout_is_exact(layout, se):
    e, d, p = layout
    net = build(spec_with_identities(), se, seed=1)
    check_exact(net, torch.randn(2, 3, 33, 31), divisor=8, expand=e,
                depthwise=d, project=p)
    block = net.blocks[1]
    assert isinstance(block.expand, nn.Conv2d) == (e == 'merged')
    assert isinstance(block.dw, nn.Conv2d) == (d == 'merged')
    assert isinstance(block.project, nn.Conv2d) == (p == 'merged')
    if d == 'merged':  # one 7x7 conv, the total padded: 5 + 3 + 11 -> 24
        assert block.dw.kernel_size == (7, 7) and block.dw.groups == 24


def test_zero_atoms_stay_exactly_zero_through_se():
    net = build(spec_with_identities(), se=True)
    net.switch_to_deploy(divisor=8, expand='split', depthwise='split',
                         project='split')
    block = net.blocks[1]  # atoms {3: 5, 5: 3, 7: 11} -> {8, 8, 16}
    assert block.padded_kernels == {3: 8, 5: 8, 7: 16}
    seen = []
    hooks = [dw.register_forward_hook(lambda m, i, o: seen.append(o))
             for dw in block.dw]
    with torch.no_grad():
        net(torch.randn(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    for out, n in zip(seen, (5, 3, 11)):
        assert out[:, n:].abs().max() == 0  # bias 0, weights 0
        assert out[:, :n].abs().max() > 0
    # Their SE reduce weights are zero, so the squeeze sees the real ones.
    reduce = block.se.reduce.weight[:, :, 0, 0]
    assert reduce[:, 5:8].abs().max() == 0 and reduce[:, 8:11].abs().max() > 0
    # One merged conv: only the total is padded, 5 + 3 + 11 -> 24.
    net = build(spec_with_identities(), se=True)
    net.switch_to_deploy(divisor=8, expand='merged', depthwise='merged',
                         project='merged')
    seen.clear()
    hook = net.blocks[1].dw.register_forward_hook(
        lambda m, i, o: seen.append(o))
    with torch.no_grad():
        net(torch.randn(2, 3, 32, 32))
    hook.remove()
    assert seen[0].shape[1] == 24 and seen[0][:, 19:].abs().max() == 0


def test_published_net_fuses_exactly_and_padded():
    net = build('atomnas_a', out_indices=(1, 2, 4, 6, 7))
    x = torch.randn(1, 3, 64, 64)
    check_exact(net, x)
    widths = [c.out_channels for b in net.blocks if hasattr(b, 'dw')
              for c in (b.dw if isinstance(b.dw, nn.ModuleList) else [b.dw])]
    assert widths and all(w % DEPLOY_DEFAULTS['divisor'] == 0
                          for w in widths)


def test_identity_blocks_leave_or_keep_their_constant():
    net = build(spec_with_identities())
    ids = [i for i, b in enumerate(net.blocks) if isinstance(b, IdentityBlock)]
    assert ids == [0, 2, 3, 6]
    check_exact(net, torch.randn(2, 3, 32, 32))
    kinds = [type(b).__name__ for b in net.blocks]
    # 0 follows the first block (no atomic block to join): it stays; 2 and
    # 3 join block 1's bias, 6 block 5's. (A stage starts at a block
    # without residual, so no other identity block can follow a stage end.)
    assert kinds == ['IdentityBlock', 'FusedAtomicBlock', 'Identity',
                     'Identity', 'FusedAtomicBlock', 'FusedAtomicBlock',
                     'Identity']
    assert not any(isinstance(m, _BatchNorm) for m in net.modules())


def test_fused_net_keeps_memory_format_and_mode():
    net = build(TINY_SPEC)
    net.switch_to_deploy()
    assert not net.training and not any(m.training for m in net.modules())
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last)
               for c in convs)
    outs = net(torch.randn(1, 3, 32, 32))
    assert all(o.is_contiguous() for o in outs)


# ------------------------------------------------------------- the net API
def test_deployed_net_reports_real_spec_and_refuses_surgery(tmp_path):
    net = build(spec_with_identities(), se=True)
    spec = net.arch_spec
    net.switch_to_deploy(divisor=16)
    assert net.deployed and net.arch_spec == spec
    assert count(net.arch_spec, 32).macs == count(spec, 32).macs
    net.switch_to_deploy(divisor=1)  # second call: nothing happens
    assert net.deploy_options['divisor'] == 16
    with pytest.raises(RuntimeError, match='switched to deploy'):
        net.keep_atoms({1: {3: [0]}})
    with pytest.raises(RuntimeError, match='switched to deploy'):
        net.reshape_to(spec)
    path = str(tmp_path / 'w.pth')
    torch.save({'state_dict': net.state_dict()}, path)
    with pytest.raises(CheckpointError, match='deployed'):
        net.load_pretrained(path)
    # A fused state dict loads into the same net fused the same way.
    other = build(spec_with_identities(), se=True, seed=3)
    other.switch_to_deploy(divisor=16)
    other.load_state_dict(net.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert rel_err(net(x), other(x)) == 0


def test_bad_layout_and_norm_change_nothing():
    net = build(TINY_SPEC)
    with pytest.raises(ValueError, match='depthwise=merged'):
        net.switch_to_deploy(expand='split', depthwise='merged')
    with pytest.raises(ValueError, match='divisor'):
        net.switch_to_deploy(divisor=0)
    assert not net.deployed
    gn = AtomNASNet(copy.deepcopy(TINY_SPEC),
                    norm_cfg=dict(type='GN', num_groups=4)).eval()
    before = copy.deepcopy(gn.state_dict())
    with pytest.raises(FuseError, match='stem.1: is GroupNorm'):
        gn.switch_to_deploy()
    assert not gn.deployed and gn.state_dict().keys() == before.keys()


# ------------------------------------------------------------- a trained net
def test_trained_search_deploy_checkpoint(tmp_path_factory, digits_root):
    """The deploy.pth of a real tiny search (shrunk, EMA, recalibrated)."""
    from tests.test_tools.test_export_arch import tiny_search
    path = osp.join(tiny_search(tmp_path_factory, digits_root), 'deploy.pth')
    net = AtomNASNet(arch=path, out_indices=ALL_STAGES)
    net.load_pretrained(path, prefix='backbone.')
    net.eval()
    assert net.arch_spec != load_spec(TINY_SPEC)  # the search shrank it
    spec = net.arch_spec
    x = torch.randn(4, 3, 16, 16)
    check_exact(net, x)
    assert net.arch_spec == spec
