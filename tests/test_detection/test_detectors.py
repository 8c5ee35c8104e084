"""The AtomNAS backbone inside mmdet detectors: Mask R-CNN from our configs,
RetinaNet and Faster R-CNN from mmdet's own."""
import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from torch.nn.modules.batchnorm import _BatchNorm

from atomnas_mm.models import AtomNASNet, SpecError, load_spec
from atomnas_mm.models.checkpoint import load_checkpoint_file
from tests.conftest import config_path, search_cfg


def _build(cfg_model):
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg_model)


def _mask_rcnn_cfg(variant='a', **backbone):
    cfg = Config.fromfile(
        config_path('mask_rcnn_atomnas', f'mask_rcnn_atomnas_{variant}_fpn_coco.py'))
    cfg.model.backbone.update(arch=f'atomnas_{variant}', init_cfg=None,
                              **backbone)
    return cfg


def _batch(model, with_mask, num_classes=80):
    from mmdet.testing import demo_mm_inputs
    packed = demo_mm_inputs(2, [[3, 128, 128], [3, 96, 128]],
                            num_items=[3, 2], num_classes=num_classes,
                            with_mask=with_mask)
    return model.data_preprocessor(packed, True)


def test_mask_rcnn_atomnas_a_forward_and_loss():
    cfg = _mask_rcnn_cfg('a')
    model = revert_sync_batchnorm(_build(cfg.model))  # one process: plain BN
    model.init_weights()
    assert isinstance(model.backbone, AtomNASNet)
    assert model.backbone.arch_spec == load_spec('atomnas_a')
    data = _batch(model, with_mask=True)
    losses = model(**data, mode='loss')
    for key in ('loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'):
        assert key in losses
    total = sum(v.sum() if torch.is_tensor(v) else sum(x.sum() for x in v)
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.blocks[3].branches['k3'].dw_conv.weight.grad \
        is not None
    model.eval()
    with torch.no_grad():
        results = model(**_batch(model, with_mask=True), mode='predict')
    assert len(results) == 2 and 'masks' in results[0].pred_instances


@pytest.mark.parametrize('base', [
    'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'])
def test_other_detectors_train_a_step(base, tmp_path):
    user = tmp_path / 'det.py'
    user.write_text(
        f"_base_ = '{base}'\n"
        "custom_imports = dict(imports=['atomnas_mm'])\n"
        "model = dict(backbone=dict(_delete_=True, "
        "type='atomnas_mm.AtomNASNet', arch='atomnas_c', "
        "out_indices=(1, 2, 4, 6)), neck=dict(in_channels=[24, 40, 96, 320]))\n")
    cfg = Config.fromfile(str(user))
    assert cfg.model.neck.in_channels == AtomNASNet.channels_of(
        'atomnas_c', (1, 2, 4, 6))
    model = _build(cfg.model)
    model.init_weights()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    from mmdet.testing import demo_mm_inputs
    packed = demo_mm_inputs(2, [[3, 128, 128], [3, 128, 128]],
                            num_items=[2, 3], num_classes=80)
    w = model.backbone.blocks[8].branches['k5'].dw_conv.weight.clone()
    losses = model.train_step(packed, wrapper)
    assert torch.isfinite(losses['loss'])
    assert not torch.equal(w, model.backbone.blocks[8].branches['k5'].dw_conv.weight)


def test_pretrained_from_shrunk_search_checkpoint(tmp_path, digits_root,
                                                  tiny_spec):
    Runner.from_cfg(search_cfg(tmp_path / 's', digits_root, tiny_spec,
                               max_epochs=2)).train()
    ckpt = str(tmp_path / 's' / 'deploy.pth')
    saved = load_checkpoint_file(ckpt)
    spec = load_spec(saved['meta']['atomnas_spec'])
    assert spec != load_spec(tiny_spec)  # it was shrunk
    cfg = _mask_rcnn_cfg('a')
    cfg.model.backbone.update(
        arch=None, out_indices=(1, 2),
        norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=ckpt, prefix='backbone.'))
    cfg.model.neck.update(in_channels=AtomNASNet.channels_of(ckpt, (1, 2)),
                          num_outs=3)
    cfg.model.rpn_head.anchor_generator.strides = [4, 8, 16]
    for ext in ('bbox_roi_extractor', 'mask_roi_extractor'):
        cfg.model.roi_head[ext].featmap_strides = [4, 8]
    model = _build(cfg.model)
    model.init_weights()
    assert model.backbone.arch_spec == spec
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, saved['state_dict']['backbone.' + k]), k
    losses = model(**_batch(model, with_mask=True), mode='loss')
    assert torch.isfinite(losses['loss_mask'])


def test_checkpoint_without_spec_or_bad_out_indices(tmp_path, tiny_spec):
    ckpt = tmp_path / 'plain.pth'
    torch.save({'state_dict': AtomNASNet(tiny_spec).state_dict()}, ckpt)
    with pytest.raises(SpecError, match='plain.pth: holds no AtomNAS spec'):
        AtomNASNet(None, init_cfg=dict(type='Pretrained',
                                       checkpoint=str(ckpt)))
    torch.save({'state_dict': {}, 'meta': {
        'atomnas_spec': load_spec(tiny_spec).to_dict()}}, ckpt)
    with pytest.raises(ValueError, match='out_indices: 4 .*plain.pth'):
        AtomNASNet(None, out_indices=(1, 2, 4, 6),
                   init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))


def test_frozen_stages_and_norm_eval_under_converted_syncbn():
    cfg = _mask_rcnn_cfg('a', frozen_stages=1, norm_eval=True)
    model = revert_sync_batchnorm(_build(cfg.model))
    model.train()
    bb = model.backbone
    bns = [m for m in bb.modules() if isinstance(m, _BatchNorm)]
    assert bns and type(bns[0]).__name__ == '_BatchNormXd'
    assert all(not m.training for m in bns)
    for m in bb.stage_modules(0) + bb.stage_modules(1):
        assert all(not p.requires_grad for p in m.parameters())
    assert all(p.requires_grad for p in bb.blocks[4].parameters())
    before = bns[-1].running_mean.clone()
    model(**_batch(model, with_mask=True), mode='loss')
    assert torch.equal(before, bns[-1].running_mean)


def test_coco_configs_parse(tmp_path):
    for v in ('a', 'b', 'c'):
        cfg = Config.fromfile(config_path(
            'mask_rcnn_atomnas', f'mask_rcnn_atomnas_{v}_fpn_coco.py'))
        cfg.dump(str(tmp_path / f'{v}.py'))  # the Runner dumps it too
        assert cfg.train_cfg.max_epochs == 23
        assert cfg.param_scheduler[1].milestones == [15, 20]
        assert cfg.model.backbone.norm_cfg.type == 'SyncBN'
        assert cfg.model.backbone.init_cfg.checkpoint.endswith(
            f'atomnas_{v}_imagenet/deploy.pth')
    c5 = Config.fromfile(config_path('mask_rcnn_atomnas',
                                     'mask_rcnn_atomnas_c_c5_coco.py'))
    model = revert_sync_batchnorm(_build(c5.model.copy() | dict(
        backbone=c5.model.backbone | dict(arch='atomnas_c', init_cfg=None))))
    losses = model(**_batch(model, with_mask=True), mode='loss')
    assert torch.isfinite(losses['loss_mask'])


def test_memory_format_does_not_change_roi_features():
    """mmcv's CPU RoIAlign misreads channels_last tensors: the backbone must
    hand contiguous features on, so both formats pool the same RoIs."""
    torch.manual_seed(0)
    nets = []
    for fmt in ('channels_last', 'contiguous'):
        cfg = _mask_rcnn_cfg('a', memory_format=fmt,
                             norm_cfg=dict(type='BN', requires_grad=True))
        nets.append(_build(cfg.model).eval())
    nets[1].load_state_dict(nets[0].state_dict())
    inputs = _batch(nets[0], with_mask=True)['inputs']
    rois = torch.tensor([[0, 10., 10., 60., 70.], [1, 5., 20., 90., 100.],
                         [0, 0., 0., 127., 127.]])
    pooled = []
    with torch.no_grad():
        for net in nets:
            feats = net.extract_feat(inputs)
            ext = net.roi_head.bbox_roi_extractor
            pooled.append(ext(feats[:ext.num_inputs], rois))
    assert torch.allclose(pooled[0], pooled[1], atol=1e-4)
