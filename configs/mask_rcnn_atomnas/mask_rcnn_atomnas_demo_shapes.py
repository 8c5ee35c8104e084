# Mask R-CNN with a small AtomNAS backbone, trained from scratch on the
# synthetic shapes set (128x128 images, 3 categories), sized for a CPU demo.
# Data:  python tools/dataset_converters/make_shapes_coco.py data/shapes_coco
# Train: python tools/train.py configs/mask_rcnn_atomnas/mask_rcnn_atomnas_demo_shapes.py
# Measured on 2 idle CPU cores: 7 min 17 s; val bbox mAP 0.333 (mAP_50
# 0.568), segm mAP 0.357 (mAP_50 0.554). On a machine that other processes
# load, OMP_NUM_THREADS=1 is much faster than two threads waiting on each
# other.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']

custom_imports = dict(imports=['atomnas_mm'], allow_failed_imports=False)


# A narrow net with the supernet's block structure: every block has 3x3,
# 5x5 and 7x7 depthwise kernels, here with 2 x C_in atoms each (6x
# expansion in all). Four stages of searchable blocks give strides 4, 8,
# 16 and 32 (stage indices 1-4).
demo_arch = dict(
    stem_channels=16,
    first_block=dict(out_channels=16, kernel_size=3),
    blocks=[
        dict(in_channels=16, out_channels=24, stride=2,
             kernels={'3': 32, '5': 32, '7': 32}),
        dict(in_channels=24, out_channels=24, stride=1,
             kernels={'3': 48, '5': 48, '7': 48}),
        dict(in_channels=24, out_channels=40, stride=2,
             kernels={'3': 48, '5': 48, '7': 48}),
        dict(in_channels=40, out_channels=40, stride=1,
             kernels={'3': 80, '5': 80, '7': 80}),
        dict(in_channels=40, out_channels=80, stride=2,
             kernels={'3': 80, '5': 80, '7': 80}),
        dict(in_channels=80, out_channels=80, stride=1,
             kernels={'3': 160, '5': 160, '7': 160}),
        dict(in_channels=80, out_channels=128, stride=2,
             kernels={'3': 160, '5': 160, '7': 160}),
    ],
    head_channels=128,
    activation='relu',
    se_ratio=0.0)
out_indices = (1, 2, 3, 4)
fpn_channels = 64
classes = ('square', 'circle', 'triangle')
image_size = 128

model = dict(
    backbone=dict(
        _delete_=True,
        type='atomnas_mm.AtomNASNet',
        arch=demo_arch,
        out_indices=out_indices,
        # Trained from scratch: BN learns and keeps its batch statistics.
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False),
    neck=dict(
        in_channels=[24, 40, 80, 128],  # stages 1-4 of demo_arch
        out_channels=fpn_channels,
        num_outs=5),
    rpn_head=dict(
        in_channels=fpn_channels,
        feat_channels=fpn_channels,
        # Shapes are 12-50 px: anchors of 12, 24, 48, 96, 192 px.
        anchor_generator=dict(scales=[3])),
    roi_head=dict(
        # A fixed 2x2 sampling grid: mmcv's adaptive one makes RoIAlign's
        # CPU backward the slowest op of a step.
        bbox_roi_extractor=dict(
            roi_layer=dict(sampling_ratio=2),
            out_channels=fpn_channels,
            finest_scale=28),
        bbox_head=dict(
            in_channels=fpn_channels,
            fc_out_channels=256,
            num_classes=len(classes)),
        mask_roi_extractor=dict(
            roi_layer=dict(sampling_ratio=2),
            out_channels=fpn_channels,
            finest_scale=28),
        mask_head=dict(
            num_convs=2,
            in_channels=fpn_channels,
            conv_out_channels=fpn_channels,
            num_classes=len(classes))),
    # At most 5 objects an image: far fewer proposals and samples suffice.
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(max_per_img=20)))

data_root = 'data/shapes_coco/'
metainfo = dict(classes=classes)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    ann_file=data_root + 'annotations/instances_val.json',
    metric=['bbox', 'segm'])
test_evaluator = val_evaluator

max_epochs = 10
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
# From scratch in 500 steps: AdamW with a short warmup and a cosine decay;
# clipping guards the early, noisy RPN/RoI losses.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=4e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs,
         eta_min=1e-5, convert_to_iter_based=True),
]

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(type='atomnas_mm.CheckpointHook', interval=5,
                    max_keep_ckpts=2))
log_processor = dict(window_size=10)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
