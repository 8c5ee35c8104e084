import pytest
import torch

from atomnas_mm.models.arch import BlockSpec
from atomnas_mm.models.layers import AtomicBlock, IdentityBlock


def _block(kernels, se=0, stride=1, cin=8, cout=8):
    torch.manual_seed(0)
    # momentum 0: a train-mode forward leaves running stats as they are, so
    # eval outputs before and after can be compared.
    b = AtomicBlock(BlockSpec(cin, cout, stride, kernels), se_channels=se,
                    norm_cfg=dict(type='BN', momentum=0.0))
    for m in b.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return b


def _outputs(b, x):
    b.eval()
    ye = b(x)
    b.train()
    return ye, b(x)


def test_forward_shape_and_spec():
    b = _block({3: 6, 5: 5, 7: 4}, stride=2, cout=16)
    assert b(torch.randn(2, 8, 9, 9)).shape == (2, 16, 5, 5)
    assert b.spec() == BlockSpec(8, 16, 2, {3: 6, 5: 5, 7: 4})


def test_removing_dead_atoms_keeps_outputs():
    b = _block({3: 6, 5: 5, 7: 4})
    bns = b.importance_bns()
    bns[3].weight.data[[1, 4]] = 0  # dead atoms: gamma 0, beta != 0
    bns[7].weight.data[:] = 0  # a whole kernel dies
    x = torch.randn(4, 8, 10, 10)
    ye, yt = _outputs(b, x)
    record = b.keep_atoms({3: [0, 2, 3, 5], 5: range(5)})
    ye2, yt2 = _outputs(b, x)
    assert b.kernels == {3: 4, 5: 5}
    assert torch.allclose(ye, ye2, atol=1e-5)
    assert torch.allclose(yt, yt2, atol=1e-5)
    dropped = [r for r in record if r.new is None]
    assert len(dropped) == 7  # k7: expand/dw/project convs + 2 BNs x 2
    for r in record:
        if r.new is not None:
            assert torch.equal(r.new, r.old.index_select(r.dim, r.index))


@pytest.mark.parametrize('se', [0, 4])
def test_all_atoms_dead_becomes_identity_plus_constant(se):
    b = _block({3: 4, 5: 4}, se=se)
    for bn in b.importance_bns().values():
        bn.weight.data.zero_()  # every atom dead: gamma 0, beta != 0
    x = torch.randn(2, 8, 6, 6)
    ye, yt = _outputs(b, x)
    ident = b.to_identity()
    assert isinstance(ident, IdentityBlock) and not list(ident.parameters())
    assert ident.spec().is_identity and ident.kernels == {}
    ident.eval()
    # Eval: what the dead block added is kept, not dropped.
    assert not torch.allclose(ye, x, atol=1e-3)
    assert torch.allclose(ident(x), ye, atol=1e-5)
    # Train mode, as the docstring says: the block gave x + beta_p (batch
    # statistics cancel the constant); the identity gives x + c.
    beta_p = b.project_bn.bias.view(1, -1, 1, 1)
    assert torch.allclose(yt, x + beta_p, atol=1e-5)
    ident.train()
    assert torch.allclose(ident(x), ye, atol=1e-5)


def test_identity_block_state_round_trip():
    b = _block({3: 4})
    ident = b.to_identity()
    fresh = IdentityBlock(8)
    fresh.load_state_dict(ident.state_dict())
    x = torch.randn(1, 8, 3, 3)
    assert torch.equal(fresh(x), ident(x))
    with pytest.raises(ValueError, match='shape'):
        IdentityBlock(8, torch.zeros(4))


def test_block_without_residual_must_keep_an_atom():
    b = _block({3: 4}, stride=2)
    with pytest.raises(ValueError, match='at least one atom'):
        b.keep_atoms({})
    with pytest.raises(ValueError, match='at least one atom'):
        b.to_identity()


def test_bad_keep_indices():
    b = _block({3: 4})
    with pytest.raises(ValueError, match='out of range'):
        b.keep_atoms({3: [0, 4]})
    with pytest.raises(ValueError, match='no kernel'):
        b.keep_atoms({9: [0]})


def test_se_channels_follow():
    b = _block({3: 6, 5: 5}, se=4)
    b.keep_atoms({3: [0, 1], 5: [2]})
    assert b.se.reduce.in_channels == 3 and b.se.expand.out_channels == 3
    assert b(torch.randn(1, 8, 5, 5)).shape == (1, 8, 5, 5)
