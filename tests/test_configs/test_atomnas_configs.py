"""Every config under configs/atomnas/ loads and builds; the ImageNet ones
run two training iterations and an evaluation on a tiny ImageNet-style
tree, through the real Runner and data pipeline."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from atomnas_mm.models import AtomNASNet
from tests.conftest import ROOT

CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'atomnas', '*.py')))
# The accumulation variants only set accumulative_counts (and with_cp) on the
# C config: tests/test_engine/test_batch_scaling.py and test_accumulation.py
# cover them; training each for two iterations here would only cost time.
IMAGENET = [c for c in CONFIGS
            if c.endswith('_imagenet.py') and 'accum' not in c]


def test_the_paper_configs_exist():
    names = {osp.basename(c) for c in CONFIGS}
    for v in 'abc':
        assert f'atomnas_{v}_imagenet.py' in names
        assert f'atomnas_{v}_plus_imagenet.py' in names
    assert 'atomnas_c_equal_penalty_imagenet.py' in names
    assert 'atomnas_retrain_imagenet.py' in names
    assert 'atomnas_demo_digits.py' in names
    assert 'atomnas_c_budget_imagenet.py' in names
    assert 'atomnas_demo_digits_budget.py' in names


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_builds_its_model(path):
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(path)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    assert isinstance(model.backbone, AtomNASNet)


@pytest.mark.parametrize('path', IMAGENET, ids=osp.basename)
def test_imagenet_config_trains_two_iterations(path, tiny_imagenet,
                                               tmp_path):
    cfg = Config.fromfile(path)
    cfg.work_dir = str(tmp_path)
    cfg.merge_from_dict({
        'train_dataloader.dataset.data_root': tiny_imagenet,
        'train_dataloader.dataset.indices': 4,
        'train_dataloader.batch_size': 2,
        'train_dataloader.num_workers': 0,
        'val_dataloader.dataset.data_root': tiny_imagenet,
        'val_dataloader.dataset.indices': 2,
        'val_dataloader.batch_size': 2,
        'val_dataloader.num_workers': 0,
        'train_cfg.max_epochs': 1,
        'train_cfg.val_interval': 1,
        'default_hooks.logger.interval': 1,
    })
    cfg.test_dataloader = cfg.val_dataloader
    penalty = cfg.optim_wrapper.get('penalty') or {}
    if penalty.get('target'):
        # Two iterations: no ramp, so the target is due at the first (the
        # forced removal runs on the full supernet).
        cfg.optim_wrapper.penalty.ramp_epochs = 0
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    assert osp.isfile(osp.join(tmp_path, 'epoch_1.pth'))
    if 'DynamicShrinkHook' in str(cfg.custom_hooks):
        assert osp.isfile(osp.join(tmp_path, 'searched_arch.json'))
    if penalty.get('target'):
        from atomnas_mm.models.arch import count, first_not_divisible
        spec = runner.model.backbone.arch_spec
        assert count(spec).macs <= penalty.target['macs']
        assert first_not_divisible(spec, 8) is None
