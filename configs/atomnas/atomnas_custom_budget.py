# Your data, your budget: start from a published AtomNAS net (the authors'
# weights, converted) or from the supernet, search it down to a MACs target
# on your own image-folder data set, and train the result, in one run.
#
#   python tools/model_converters/atomnas_to_mmpretrain.py atomnas_c.pt checkpoints/atomnas_c_mmpretrain.pth
#   python tools/train.py configs/atomnas/atomnas_custom_budget.py --cfg-options \
#       train_dataloader.dataset.data_root=data/flowers \
#       val_dataloader.dataset.data_root=data/flowers \
#       model.head.num_classes=102 optim_wrapper.penalty.target.macs=200e6 \
#       model.backbone.init_cfg.checkpoint=checkpoints/atomnas_c_mmpretrain.pth
#
# Data: DATA_ROOT/train/<class>/*.jpg and DATA_ROOT/val/<class>/*.jpg
# (mmpretrain's CustomDataset). Input size S other than 224 (read in three
# places, so three options): train_dataloader.dataset.pipeline.1.scale=S
# val_dataloader.dataset.pipeline.1.scale="(S,S)" optim_wrapper.penalty.input_size=S
# From the supernet instead (no pretrained weights): model.backbone.init_cfg=None
# (then use the from-scratch recipe of atomnas_c_budget_imagenet.py: 10x the
# lr, a lambda ramp of several epochs).
#
# Starting from a trained net is not starting from scratch:
# * lr 10x below the from-scratch rate for the batch (0.004 per 64 images
#   -> 4e-4; the new classifier gets 10x that): RMSprop moves every weight by
#   about lr per step whatever its gradient, so the from-scratch rate would
#   overwrite the pretrained weights within a few hundred steps.
# * Warm-up over the first epoch: RMSprop's square average starts at 0, so
#   its first steps are ~3x lr, and the new classifier's first gradients are
#   large; both would jolt the pretrained weights.
# * The atoms' gammas are not ~1 but whatever training made them (and the
#   published nets already lost every atom with |gamma| < 1e-3): alpha_hat
#   (the EMA copy's gamma) starts at them, so weak atoms can die early, and
#   a short lambda ramp (1 epoch, alongside the warm-up) is enough: the
#   features exist already. Gammas move by about lr per step: at this lr a
#   gamma of 0.5 would need ~1250 steps to reach the threshold, so the
#   depthwise BNs get 10x lr (~125 steps). The budget follows a planned
#   descent: dead atoms go first, then the weakest down to the plan
#   (logged, with a warning if they were still alive), so the target is met
#   on any schedule without pushing lambda up.
# * BN statistics come from ImageNet: BN recalibration on your training
#   data before every evaluation and before the deploy checkpoint.
# * No channel divisor: the published widths are not multiples of 8.
_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['atomnas_mm'], allow_failed_imports=False)

# Read when this file is parsed: edit them here, or with --cfg-options set
# the keys that use them, as in the command above.
data_root = 'data/custom'
num_classes = 1000          # your data set's
input_size = 224
target_macs = 200e6         # at input_size, with num_classes outputs
pretrained = 'checkpoints/atomnas_c_mmpretrain.pth'
max_epochs = 30

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='atomnas_mm.AtomNASNet',
        # Built to the spec inside `pretrained` (any published net is a
        # sub-net of the supernet); the supernet when init_cfg is None.
        arch='supernet',
        norm_cfg=dict(type='BN', momentum=0.01, eps=1e-3),  # the authors' eps
        init_cfg=dict(type='Pretrained', checkpoint=pretrained,
                      prefix='backbone.')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='atomnas_mm.DropoutLinearClsHead', dropout_rate=0.2,
        num_classes=num_classes, in_channels=1280,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                  mode='original'),
        topk=(1, )))

# The published nets were trained on ImageNet with its mean and std.
data_preprocessor = dict(
    num_classes=num_classes, mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=input_size, backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(input_size, input_size), backend='pillow',
         interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64, num_workers=4,
    dataset=dict(type='CustomDataset', data_root=data_root,
                 data_prefix='train', pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=64, num_workers=4,
    dataset=dict(type='CustomDataset', data_root=data_root,
                 data_prefix='val', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

optim_wrapper = dict(
    type='atomnas_mm.AtomNASOptimWrapper',
    constructor='atomnas_mm.AtomNASOptimWrapperConstructor',
    optimizer=dict(type='atomnas_mm.AtomNASRMSprop', lr=4e-4, alpha=0.9,
                   momentum=0.9, eps=1e-3, weight_decay=1e-5),
    paramwise_cfg=dict(custom_keys={
        'head.fc': dict(lr_mult=10.0),   # new, random classifier
        'dw_bn': dict(lr_mult=10.0),     # the atoms' gammas
    }),
    penalty=dict(weight=1.0e-4, ramp_epochs=1, input_size=input_size,
                 cost='macs', target=dict(macs=target_macs),
                 target_by=0.75))
auto_scale_lr = dict(base_batch_size=64, enable=False)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         eta_min=1e-6, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='atomnas_mm.CheckpointHook', interval=5,
                    max_keep_ckpts=2, save_last=True))
custom_hooks = [
    # Dead: alpha_hat (the EMA copy's gamma) at or below 1e-3; checked every
    # epoch, removed once the dead atoms cost 1M MACs (at input_size).
    dict(type='atomnas_mm.DynamicShrinkHook', threshold=1e-3, delta=1e6,
         interval=1),
    # EMA decay 0.999 (warmed up per step): a horizon of ~1000 steps fits
    # a fine-tuning run; it starts at the pretrained weights.
    dict(type='atomnas_mm.EMAHook', momentum=1e-3, priority='ABOVE_NORMAL'),
    dict(type='atomnas_mm.BNRecalibrationHook', num_batches=20),
]
