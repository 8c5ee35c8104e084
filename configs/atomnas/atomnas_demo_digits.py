# AtomNAS demo on scikit-learn's handwritten digits (1,797 8x8 images,
# 10 classes), small enough for a laptop CPU: a scaled-down supernet with the
# paper's block structure (3/5/7 kernels, 6x expansion per kernel) at 16x16.
# Data: python tools/dataset_converters/digits_to_folder.py (make demo runs it)
_base_ = ['mmpretrain::_base_/default_runtime.py']

custom_imports = dict(imports=['atomnas_mm'], allow_failed_imports=False)

# The demo supernet, inline: stem 16, fixed first block, then six searchable
# blocks in three stages; every kernel starts with 6 x C_in atoms.
demo_supernet = dict(
    stem_channels=16,
    first_block=dict(out_channels=16, kernel_size=3),
    blocks=[
        dict(in_channels=16, out_channels=24, stride=2,
             kernels={'3': 96, '5': 96, '7': 96}),
        dict(in_channels=24, out_channels=24, stride=1,
             kernels={'3': 144, '5': 144, '7': 144}),
        dict(in_channels=24, out_channels=40, stride=2,
             kernels={'3': 144, '5': 144, '7': 144}),
        dict(in_channels=40, out_channels=40, stride=1,
             kernels={'3': 240, '5': 240, '7': 240}),
        dict(in_channels=40, out_channels=80, stride=2,
             kernels={'3': 240, '5': 240, '7': 240}),
        dict(in_channels=80, out_channels=80, stride=1,
             kernels={'3': 480, '5': 480, '7': 480}),
    ],
    head_channels=256,
    activation='relu',
    se_ratio=0.0)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='atomnas_mm.AtomNASNet',
        arch=demo_supernet,
        norm_cfg=dict(type='BN', momentum=0.1, eps=1e-3)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=256,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, )))

data_root = 'data/digits'
data_preprocessor = dict(
    num_classes=10,
    mean=[77.8, 77.8, 77.8],
    std=[95.9, 95.9, 95.9],
    to_rgb=False)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=16, crop_ratio_range=(0.6, 1.0),
         backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(16, 16), backend='pillow',
         interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    dataset=dict(type='CustomDataset', data_root=data_root,
                 data_prefix='train', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=128,
    num_workers=0,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='val',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

max_epochs = 16
# The search: FLOPs-aware L1 on the depthwise BN gammas (the atoms'
# importance), ramped up over the first epochs...
optim_wrapper = dict(
    type='atomnas_mm.AtomNASOptimWrapper',
    optimizer=dict(type='atomnas_mm.AtomNASRMSprop', lr=0.008, alpha=0.9,
                   momentum=0.9, eps=1e-3, weight_decay=1e-5),
    penalty=dict(weight=2e-3, ramp_epochs=2, input_size=16),
    constructor='atomnas_mm.AtomNASOptimWrapperConstructor')
# lr, EMA decay and alpha_hat's beta are set for 64 images per optimizer step
# (one process, batch 64); --auto-scale-lr adapts them to another total
# batch (processes x batch x accumulative_counts).
auto_scale_lr = dict(base_batch_size=64, enable=False)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         eta_min=1e-5),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=4)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    # Written to a temporary name and renamed; old ones deleted after.
    checkpoint=dict(type='atomnas_mm.CheckpointHook', interval=4,
                    max_keep_ckpts=2, save_last=True))
custom_hooks = [
    # ...dead atoms removed every epoch once the atoms dead by alpha_hat (the
    # EMA copy's gamma) cost 10k MACs (the demo net is ~2M MACs; ImageNet
    # uses 1e6). A looser threshold than ImageNet's 1e-3 and an EMA of
    # decay 0.99 (ImageNet: 0.99995) fit a 368-step run.
    dict(type='atomnas_mm.DynamicShrinkHook', threshold=1e-2, delta=1e4,
         interval=1, input_size=16, num_classes=10),
    dict(type='atomnas_mm.EMAHook', momentum=0.01, priority='ABOVE_NORMAL'),
    # EMA weights need BN statistics of their own before evaluation.
    dict(type='atomnas_mm.BNRecalibrationHook', num_batches=10),
]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
