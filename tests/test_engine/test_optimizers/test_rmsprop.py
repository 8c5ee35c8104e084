import pytest
import torch

from atomnas_mm.engine import RMSpropTF


def test_update_matches_tensorflow_formula():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = RMSpropTF([p], lr=0.1, alpha=0.9, eps=1e-3, momentum=0.9)
    ms, mom = torch.ones(2), torch.zeros(2)
    x = p.detach().clone()
    for g in (torch.tensor([0.5, 0.1]), torch.tensor([-0.2, 0.3])):
        p.grad = g.clone()
        opt.step()
        ms = 0.9 * ms + 0.1 * g * g
        mom = 0.9 * mom + 0.1 * g / torch.sqrt(ms + 1e-3)
        x = x - mom
        assert torch.allclose(p.detach(), x)


def test_bad_arguments():
    p = [torch.nn.Parameter(torch.ones(1))]
    with pytest.raises(ValueError, match='alpha'):
        RMSpropTF(p, alpha=1.0)
    with pytest.raises(ValueError, match='eps'):
        RMSpropTF(p, eps=-1)


def test_authors_rmsprop_square_average_starts_at_zero_lr_outside():
    """The authors' variant: ms from 0, lr applied to the whole buffer, so
    a change of lr rescales past momentum too (warm-up, decay)."""
    from atomnas_mm.engine import AtomNASRMSprop
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = AtomNASRMSprop([p], lr=0.1, alpha=0.9, eps=1e-3, momentum=0.9,
                         weight_decay=0.01)
    ms, buf = torch.zeros(2, dtype=torch.float64), torch.zeros(
        2, dtype=torch.float64)
    x = p.detach().clone()
    for lr, g in ((0.1, [0.5, 0.1]), (0.3, [-0.2, 0.3])):
        opt.param_groups[0]['lr'] = lr
        g = torch.tensor(g, dtype=torch.float64)
        p.grad = g.clone()
        opt.step()
        g = g + 0.01 * x
        ms = 0.9 * ms + 0.1 * g * g
        buf = 0.9 * buf + g / torch.sqrt(ms + 1e-3)
        x = x - lr * buf
        assert torch.allclose(p.detach(), x, rtol=0, atol=1e-15)
    # The first step is ~1/sqrt(0.1 g^2 + eps): ~30x the TF variant's here.
    q = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    for opt_cls, param in ((AtomNASRMSprop, q[0]), (RMSpropTF, q[1])):
        param.grad = torch.full((1, ), 0.01)
        opt_cls([param], lr=1.0, momentum=0).step()
    assert abs(float(q[0].detach())) / abs(float(q[1].detach())) > 25
