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
