import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

from atomnas_mm.engine import BNRecalibrationHook, recalibrate_bn
from tests.conftest import search_cfg


class _BNNet(BaseModel):
    """A real mmengine model whose first layer is a BN, so the statistics
    it should end with can be computed by hand."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(3, momentum=0.1)
        self.drop = nn.Dropout(0.5)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        assert not self.drop.training  # only BN collects statistics
        return self.bn(inputs)


def test_cumulative_average_over_batches():
    torch.manual_seed(0)
    batches = [dict(inputs=torch.randn(8, 3) * (i + 1) + i) for i in range(5)]
    model = _BNNet()
    model.train()
    assert recalibrate_bn(model, batches, num_batches=4, progress=False) == 4
    used = torch.stack([b['inputs'] for b in batches[:4]])
    assert torch.allclose(model.bn.running_mean, used.mean((0, 1)),
                          atol=1e-6)
    assert torch.allclose(model.bn.running_var,
                          used.var(1, unbiased=True).mean(0), atol=1e-5)
    assert model.bn.momentum == 0.1 and model.training


def test_hook_recalibrates_for_eval_and_restores_training_stats(
        tmp_path, digits_root, tiny_spec):
    """An EMA that does not average buffers: the hook keeps the training
    statistics and puts them back itself."""
    cfg = search_cfg(tmp_path, digits_root, tiny_spec, max_epochs=1,
                     subset=64, interval=1000)
    cfg.custom_hooks[1].update_buffers = False
    runner = Runner.from_cfg(cfg)
    runner.train()
    bn = runner.model.backbone.blocks[0].branches['k3'].dw_bn
    train_stats = bn.running_mean.clone()
    seen = {}
    hook = next(h for h in runner.hooks
                if isinstance(h, BNRecalibrationHook))
    hook.before_val_epoch(runner)
    seen['recal'] = bn.running_mean.clone()
    hook.after_val_epoch(runner)
    assert not torch.allclose(seen['recal'], train_stats)
    assert torch.equal(bn.running_mean, train_stats)


def test_with_an_ema_of_buffers_the_swap_restores_training_stats(
        tmp_path, digits_root, tiny_spec):
    """The default EMA averages BN statistics too: the EMA hook swaps them
    in before the recalibration and back after it, in the runner's order
    (EMA hook first both times)."""
    from atomnas_mm.engine import EMAHook
    cfg = search_cfg(tmp_path, digits_root, tiny_spec, max_epochs=1,
                     subset=64, interval=1000)
    runner = Runner.from_cfg(cfg)
    runner.train()
    bn = runner.model.backbone.blocks[0].branches['k3'].dw_bn
    train_stats = bn.running_mean.clone()
    ema = next(h for h in runner.hooks if isinstance(h, EMAHook))
    recal = next(h for h in runner.hooks
                 if isinstance(h, BNRecalibrationHook))
    assert ema.ema_model.update_buffers
    ema.before_val_epoch(runner)
    recal.before_val_epoch(runner)
    recalibrated = bn.running_mean.clone()
    ema.after_val_epoch(runner)
    recal.after_val_epoch(runner)
    assert not torch.allclose(recalibrated, train_stats)
    assert torch.equal(bn.running_mean, train_stats)


def test_bad_num_batches():
    with pytest.raises(ValueError, match='num_batches'):
        BNRecalibrationHook(num_batches=0)


def test_progress_goes_to_the_current_stdout():
    """The bar follows a caller's redirection (ablations.py hides it);
    mmengine's ProgressBar default stream is bound at import."""
    import contextlib
    import io
    import sys
    batches = [dict(inputs=torch.randn(8, 3)) for _ in range(3)]
    before = sys.stdout
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        recalibrate_bn(_BNNet(), batches, num_batches=3, progress=True)
    assert '3/3' in buf.getvalue()
    assert sys.stdout is before
