import os
import os.path as osp
import sys
from typing import Optional

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import atomnas_mm  # noqa: E402,F401
from atomnas_mm.models.arch import load_spec  # noqa: E402

# `make test` runs the suite on pytest-xdist workers, one per core: each
# takes its share of the cores (oversubscribed threads run slower).
if os.environ.get('PYTEST_XDIST_WORKER'):
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(
        os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))))

# The shipped tiny supernet (atomnas_mm/models/arch/specs/tiny.json, also
# the benchmarks' smoke-test net) as a plain dict, kernel keys as in JSON.
TINY_SPEC = load_spec('tiny').to_dict()


@pytest.fixture
def tiny_spec():
    """A 4-block supernet (two stages) that builds and runs in milliseconds."""
    import copy
    return copy.deepcopy(TINY_SPEC)


@pytest.fixture(scope='session')
def digits_root(tmp_path_factory):
    """scikit-learn's digits written as a class-folder tree, once."""
    from atomnas_mm.utils.digits import convert
    root = str(tmp_path_factory.mktemp('digits'))
    convert(root)
    return root


def image_classifier_cfg(arch, num_classes: int,
                         head_channels: Optional[int] = None,
                         head_type: str = 'LinearClsHead', **backbone) -> dict:
    """The model config of an mmpretrain ``ImageClassifier`` with an AtomNAS
    backbone, global average pooling and a linear head, as the configs
    write it.

    Args:
        arch: The backbone's spec (name, path, dict; None when a
            ``Pretrained`` init_cfg carries it).
        num_classes: Width of the head.
        head_channels: The head's input; default: the spec's head width.
        head_type: The head's registered type.
        **backbone: More options of ``AtomNASNet`` (``init_cfg``,
            ``norm_cfg``...).
    """
    if head_channels is None:
        head_channels = load_spec(arch).head_channels
    return dict(
        type='ImageClassifier',
        backbone=dict(type='atomnas_mm.AtomNASNet', arch=arch, **backbone),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type=head_type, num_classes=num_classes,
                  in_channels=head_channels))


def image_classifier(arch, num_classes: int, **kwargs):
    """:func:`image_classifier_cfg` built in mmpretrain's scope (random
    init; logits with ``model(x, mode='tensor')``)."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(image_classifier_cfg(arch, num_classes,
                                                 **kwargs))


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


def search_cfg(work_dir, data_root, arch, max_epochs=2, subset=128,
               lam=0.5, interval=2, **overrides):
    """A tiny, aggressive search on the digits: SGD with a strong penalty
    and a loose threshold, so atoms die within a few iterations; shrink
    checks every ``interval`` iterations. The shrink hook keeps an
    alpha_hat of its own with a fixed decay and gates on what it removes
    (``importance='own'``, ``gate='both'``), so that what dies is decided
    by the hook alone; the authors' rules are tested on their own."""
    cfg = demo_cfg(work_dir, data_root, arch, max_epochs=max_epochs,
                   subset=subset)
    cfg.optim_wrapper = dict(
        type='atomnas_mm.AtomNASOptimWrapper',
        constructor='atomnas_mm.AtomNASOptimWrapperConstructor',
        optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-5),
        penalty=dict(weight=lam, ramp_epochs=0, input_size=16))
    cfg.param_scheduler = []
    cfg.train_dataloader.batch_size = 32
    cfg.custom_hooks = [
        dict(type='atomnas_mm.DynamicShrinkHook', importance='own',
             momentum=0.5, momentum_warmup=False, gate='both',
             final_removal=False, threshold=0.3, delta=0, interval=interval,
             by_epoch=False, input_size=16, num_classes=10),
        dict(type='atomnas_mm.EMAHook', momentum=0.1, priority='ABOVE_NORMAL'),
        dict(type='atomnas_mm.BNRecalibrationHook', num_batches=2,
             progress=False),
    ]
    cfg.merge_from_dict(overrides)
    return cfg


@pytest.fixture(scope='session')
def tiny_imagenet(tmp_path_factory):
    """An ImageNet-style tree (train/ and val/, 1000 class folders, one
    32x32 JPEG each), which mmpretrain's ``ImageNet`` accepts."""
    import numpy as np
    from PIL import Image
    root = tmp_path_factory.mktemp('imagenet')
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        for c in range(1000):
            d = root / split / f'n{c:08d}'
            d.mkdir(parents=True)
            img = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(img).save(d / '0.JPEG', quality=80)
    return str(root)


@pytest.fixture(scope='session')
def shapes_root(tmp_path_factory):
    """A tiny synthetic COCO set (16 train / 8 val images of 64x64)."""
    sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
    from make_shapes_coco import generate
    root = str(tmp_path_factory.mktemp('shapes_coco'))
    generate(root, num_train=16, num_val=8, size=64, seed=0)
    return root


def shapes_options(root, max_epochs=1):
    """--cfg-options pointing the shapes demo config at ``root``, shortened."""
    ann = osp.join(root, 'annotations')
    return [
        f'train_dataloader.dataset.data_root={root}/',
        f'val_dataloader.dataset.data_root={root}/',
        f'test_dataloader.dataset.data_root={root}/',
        f'val_evaluator.ann_file={ann}/instances_val.json',
        f'test_evaluator.ann_file={ann}/instances_val.json',
        'train_dataloader.batch_size=4', 'val_dataloader.batch_size=4',
        'test_dataloader.batch_size=4',
        f'train_cfg.max_epochs={max_epochs}',
        f'train_cfg.val_interval={max_epochs}',
        'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=1',
    ]
