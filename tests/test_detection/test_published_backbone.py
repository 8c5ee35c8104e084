"""Mask R-CNN with AtomNAS-C from the authors' published weights: their
checkpoint converted by tools/model_converters/atomnas_to_mmpretrain.py,
given to the detection config through one setting."""
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DefaultScope

from atomnas_mm.models import load_spec
from tests.conftest import config_path
from tests.test_models.test_converters.authors_layout import (
    authors_yml, ema_of, random_weights, save_authors_checkpoint, to_authors)
from tests.test_models.test_converters.test_authors import converter


def test_mask_rcnn_takes_the_converted_published_c(tmp_path):
    spec = load_spec('atomnas_c')
    theirs = to_authors(random_weights(spec, 1000, seed=5), spec, fused=False)
    src = str(tmp_path / 'atomnas_c.pt')
    save_authors_checkpoint(src, theirs, ema_of(theirs),
                            authors_yml(spec, 1000))
    dst = str(tmp_path / 'atomnas_c_mmpretrain.pth')
    converter.main([src, dst])

    cfg = Config.fromfile(config_path('mask_rcnn_atomnas',
                                      'mask_rcnn_atomnas_c_fpn_coco.py'))
    # What --cfg-options model.backbone.init_cfg.checkpoint=DST sets.
    cfg.merge_from_dict({'model.backbone.init_cfg.checkpoint': dst})
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    assert model.backbone.arch_spec == spec
    saved = torch.load(dst, weights_only=True)['state_dict']
    state = model.backbone.state_dict()
    assert state and not any(k.startswith('head.') for k in state)
    for k, v in state.items():
        assert torch.equal(v, saved['backbone.' + k]), k
