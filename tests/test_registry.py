"""``type='atomnas_mm.X'`` resolves from other scopes' configs."""
import pytest
from mmengine.registry import DefaultScope

from atomnas_mm.models import AtomNASNet


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet'])
def test_backbone_builds_from_scope(scope, tiny_spec):
    import importlib
    registry = importlib.import_module(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope):
        net = registry.MODELS.build(
            dict(type='atomnas_mm.AtomNASNet', arch=tiny_spec))
    assert isinstance(net, AtomNASNet)


def test_backbone_builds_inside_mmpretrain_classifier(tiny_spec):
    from mmpretrain.models import ImageClassifier
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(
            dict(type='ImageClassifier',
                 backbone=dict(type='atomnas_mm.AtomNASNet', arch=tiny_spec),
                 neck=dict(type='GlobalAveragePooling'),
                 head=dict(type='LinearClsHead', num_classes=3,
                           in_channels=64)))
    assert isinstance(model, ImageClassifier)
    assert isinstance(model.backbone, AtomNASNet)


def test_own_scope_reaches_mmengine_root(tiny_spec):
    from atomnas_mm.registry import HOOKS, MODELS
    with DefaultScope.overwrite_default_scope('atomnas_mm'):
        assert isinstance(MODELS.build(dict(type='AtomNASNet',
                                            arch=tiny_spec)), AtomNASNet)
        # EMAHook lives in mmengine's root registry.
        assert HOOKS.get('EMAHook') is not None


def test_user_config_inherits_shipped_config(tmp_path):
    from mmengine.config import Config
    user = tmp_path / 'my_cfg.py'
    user.write_text("_base_ = 'atomnas_mm::atomnas/atomnas_demo_digits.py'\n"
                    "train_cfg = dict(max_epochs=3)\n")
    cfg = Config.fromfile(str(user))
    assert cfg.model.backbone.type == 'atomnas_mm.AtomNASNet'
    assert cfg.train_cfg.max_epochs == 3
