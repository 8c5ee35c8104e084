# Mask R-CNN + FPN on COCO with a searched AtomNAS backbone, the paper's
# transfer setting: batch 16 (8 GPUs x 2 images, 8xb2), lr 0.02, x0.1 at
# epochs 15 and 20, 23 epochs, SyncBN in the backbone.
# Variants set `checkpoint`: the backbone takes its spec AND weights from
# that one file (an ImageNet search's deploy.pth).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['atomnas_mm'], allow_failed_imports=False)

checkpoint = None  # set by each variant
out_indices = (1, 2, 4, 6)  # 24, 40, 96, 320 channels at strides 4/8/16/32
model = dict(
    backbone=dict(
        _delete_=True,
        type='atomnas_mm.AtomNASNet',
        arch=None,  # from the checkpoint
        out_indices=out_indices,
        frozen_stages=-1,
        norm_cfg=dict(type='SyncBN', momentum=0.01, eps=1e-3,
                      requires_grad=True),
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint,
                      prefix='backbone.')),
    # Every searched net keeps the supernet's stage widths: stages 1, 2, 4, 6
    # have 24, 40, 96, 320 channels (AtomNASNet.channels_of('supernet',
    # out_indices); tests/test_configs checks the two agree).
    neck=dict(in_channels=[24, 40, 96, 320]))

max_epochs = 23
default_hooks = dict(checkpoint=dict(type='atomnas_mm.CheckpointHook'))
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[15, 20], gamma=0.1),
]
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0))
