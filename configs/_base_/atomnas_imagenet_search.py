# The paper's recipe: search and train in one pass on ImageNet (350 epochs).
# Variants set the supernet, lambda and the recalibration size.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32_pil_bicubic.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['atomnas_mm'], allow_failed_imports=False)

# ---------------------------------------------------------------- model ---
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='atomnas_mm.AtomNASNet',
        arch='supernet',
        # PyTorch momentum 0.01 (TF decay 0.99), eps 1e-3.
        norm_cfg=dict(type='BN', momentum=0.01, eps=1e-3)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='atomnas_mm.DropoutLinearClsHead',
        dropout_rate=0.2,
        num_classes=1000,
        in_channels=1280,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                  mode='original'),
        topk=(1, 5)))

# ----------------------------------------------------------------- data ---
# 32 GPUs x 64 images = 2048 per step, the paper's search batch (32xb64).
# The base pipeline is the paper's: bicubic RandomResizedCrop(224, scale
# 0.08-1) + flip; eval resize 256 (bicubic) + center crop 224 = 0.875.
train_dataloader = dict(batch_size=64, num_workers=8)
val_dataloader = dict(batch_size=64, num_workers=8)
test_dataloader = val_dataloader

# ------------------------------------------------------------ optimizer ---
max_epochs = 350
optim_wrapper = dict(
    type='atomnas_mm.AtomNASOptimWrapper',
    constructor='atomnas_mm.AtomNASOptimWrapperConstructor',
    # lr 0.016 per 256 images -> 0.128 for 2048; TF-style RMSprop (eps
    # inside the square root). Weight decay on conv and fc weights only
    # (the constructor turns it off for BN parameters and biases).
    optimizer=dict(type='atomnas_mm.RMSpropTF', lr=0.128, alpha=0.9,
                   momentum=0.9, eps=1e-3, weight_decay=1e-5),
    # FLOPs-aware L1 on the depthwise-BN gammas, ramped over 25 epochs.
    penalty=dict(weight=1.0e-4, ramp_epochs=25, input_size=224))
auto_scale_lr = dict(base_batch_size=2048, enable=False)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='atomnas_mm.EpochStepLR', step_size=2.4, gamma=0.97,
         by_epoch=True, begin=5, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
val_cfg = dict()
test_cfg = dict()

# ---------------------------------------------------------------- hooks ---
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    # Written to a temporary name and renamed; old ones deleted after.
    checkpoint=dict(type='atomnas_mm.CheckpointHook', interval=5,
                    max_keep_ckpts=3, save_last=True))
recalib_batches = 40  # 10 x 256 images per GPU in the paper = 40 x 64
custom_hooks = [
    # Dead atoms: |alpha_hat| and |alpha| < 1e-3, beta 0.9999; removed
    # every epoch once they cost 1M MACs.
    dict(type='atomnas_mm.DynamicShrinkHook', momentum=0.9999,
         threshold=1e-3, delta=1e6, interval=1, input_size=224),
    # EMA decay 0.9999 (mmengine's momentum = 1 - decay).
    dict(type='atomnas_mm.EMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
    dict(type='atomnas_mm.BNRecalibrationHook', num_batches=recalib_batches),
]
