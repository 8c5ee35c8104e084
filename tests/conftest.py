import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import atomnas_mm  # noqa: E402,F401

TINY_SPEC = dict(
    stem_channels=8,
    first_block=dict(out_channels=8, kernel_size=3),
    blocks=[
        dict(in_channels=8, out_channels=16, stride=2,
             kernels={'3': 12, '5': 12, '7': 12}),
        dict(in_channels=16, out_channels=16, stride=1,
             kernels={'3': 16, '5': 16, '7': 16}),
        dict(in_channels=16, out_channels=24, stride=2,
             kernels={'3': 16, '5': 16, '7': 16}),
        dict(in_channels=24, out_channels=24, stride=1,
             kernels={'3': 24, '5': 24, '7': 24}),
    ],
    head_channels=64)


@pytest.fixture
def tiny_spec():
    """A 4-block supernet (two stages) that builds and runs in milliseconds."""
    import copy
    return copy.deepcopy(TINY_SPEC)


@pytest.fixture(scope='session')
def digits_root(tmp_path_factory):
    """scikit-learn's digits written as a class-folder tree, once."""
    sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
    from digits_to_folder import convert
    root = str(tmp_path_factory.mktemp('digits'))
    convert(root)
    return root


def config_path(*parts):
    return osp.join(ROOT, 'configs', *parts)


def demo_cfg(work_dir, data_root, arch=None, max_epochs=1, subset=None,
             **overrides):
    """The digits demo config pointed at a tmp work dir and data root.

    Args:
        arch: Replace the demo supernet (e.g. the tiny spec).
        subset: Use only the first ``subset`` training images.
    """
    from mmengine.config import Config
    cfg = Config.fromfile(config_path('atomnas', 'atomnas_demo_digits.py'))
    cfg.work_dir = str(work_dir)
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = data_root
    if subset:
        cfg.train_dataloader.dataset.indices = subset
        cfg.val_dataloader.dataset.indices = subset
    if arch is not None:
        cfg.model.backbone.arch = arch
        cfg.model.head.in_channels = arch['head_channels']
    cfg.train_cfg.max_epochs = max_epochs
    cfg.train_cfg.val_interval = max_epochs
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 1
    cfg.merge_from_dict(overrides)
    return cfg
