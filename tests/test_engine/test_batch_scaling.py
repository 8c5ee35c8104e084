import pytest
from mmengine.config import Config

from atomnas_mm.engine.batch_scaling import effective_batch, scale_to_batch
from tests.conftest import config_path


def _cfg(name='atomnas_c_imagenet.py'):
    return Config.fromfile(config_path('atomnas', name))


def test_accumulation_counts_in_the_effective_batch():
    assert effective_batch(_cfg('atomnas_c_8xb64-accum4_imagenet.py'),
                           8) == 2048
    assert effective_batch(_cfg('atomnas_c_1xb64-accum32_imagenet.py'),
                           1) == 2048
    assert effective_batch(_cfg(), 32) == 2048


def test_disabled_changes_nothing():
    cfg = _cfg()
    before = cfg.to_dict()
    assert scale_to_batch(cfg, 8) == []
    assert cfg.to_dict() == before


@pytest.mark.parametrize('name, world, ratio', [
    ('atomnas_c_imagenet.py', 8, 0.25),  # 8 x 64 = 512 of 2048
    ('atomnas_c_8xb64-accum4_imagenet.py', 8, 1.0),
    ('atomnas_c_1xb64-accum32_imagenet.py', 1, 1.0),
])
def test_lr_and_per_step_decays_follow_the_batch(name, world, ratio):
    cfg = _cfg(name)
    cfg.auto_scale_lr.enable = True
    hooks = {h['type'].split('.')[-1]: dict(h) for h in cfg.custom_hooks}
    notes = scale_to_batch(cfg, world)
    assert f'lr x {ratio:g}' in notes[0]
    # mmengine scales by world x batch / base: that must equal the ratio.
    real = world * cfg.train_dataloader.batch_size
    assert real / cfg.auto_scale_lr.base_batch_size == pytest.approx(ratio)
    new = {h['type'].split('.')[-1]: h for h in cfg.custom_hooks}
    ema_decay = 1 - hooks['EMAHook']['momentum']
    assert 1 - new['EMAHook']['momentum'] == pytest.approx(ema_decay**ratio)
    # The authors' adjustment: 0.9999 per step at their base batch of 4096.
    assert 1 - new['EMAHook']['momentum'] == pytest.approx(
        0.9999 ** (2048 * ratio / 4096))
    # alpha_hat is the EMA copy's: nothing of the shrink hook's to scale.
    assert 'momentum' not in new['DynamicShrinkHook']
    # The warm-up starts at the rate of 256 images whatever the batch.
    sched, = cfg.param_scheduler
    assert sched.start_factor == pytest.approx(min(1, 256 / (2048 * ratio)))


def test_own_alpha_hat_decay_follows_the_batch():
    cfg = _cfg()
    cfg.auto_scale_lr.enable = True
    cfg.custom_hooks[0].update(importance='own', momentum=0.9999)
    scale_to_batch(cfg, 8)  # 512 of 2048
    assert cfg.custom_hooks[0].momentum == pytest.approx(0.9999 ** 0.25)


def test_every_config_carries_auto_scale_lr():
    import glob
    import os.path as osp
    for path in glob.glob(config_path('atomnas', '*.py')):
        cfg = Config.fromfile(path)
        assert 'base_batch_size' in cfg.get('auto_scale_lr', {}), \
            osp.basename(path)
