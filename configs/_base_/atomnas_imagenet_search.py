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
    # lr 0.016 per 256 images -> 0.128 for 2048; the authors' RMSprop (eps
    # inside the square root, square average from 0, lr on the whole
    # momentum buffer). Weight decay 1e-5 on every conv and linear weight
    # and the classifier's bias, none on BN (the constructor's rule).
    optimizer=dict(type='atomnas_mm.AtomNASRMSprop', lr=0.128, alpha=0.9,
                   momentum=0.9, eps=1e-3, weight_decay=1e-5),
    # FLOPs-aware L1 on the depthwise-BN gammas, ramped over 25 epochs.
    penalty=dict(weight=1.0e-4, ramp_epochs=25, input_size=224))
auto_scale_lr = dict(base_batch_size=2048, enable=False)
# Warm-up from the rate of 256 images (0.016, so 256 / 2048 of the total
# rate) over 5 epochs, then x0.97 every 2.4 epochs counted from the first
# step, per iteration (the authors' schedule, decay points included).
param_scheduler = [
    dict(type='atomnas_mm.WarmupExpDecayLR', warmup=5, start_factor=0.125,
         decay_every=2.4, gamma=0.97, by_epoch=True,
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
# EMA decay 0.9999 at a batch of 4096, the authors' base: 0.9999 ** (2048 /
# 4096) per step at 2048 (mmengine's momentum = 1 - decay), warmed up per
# step; it averages BN statistics too.
ema_momentum = 1 - 0.9999 ** 0.5
custom_hooks = [
    # Dead atoms: |alpha| and |alpha_hat| <= 1e-3, alpha_hat being the EMA
    # copy's gamma; checked every epoch, removed once the atoms dead by
    # alpha_hat cost 1M MACs; after the last epoch those go too.
    dict(type='atomnas_mm.DynamicShrinkHook', threshold=1e-3, delta=1e6,
         interval=1, input_size=224),
    dict(type='atomnas_mm.EMAHook', momentum=ema_momentum,
         priority='ABOVE_NORMAL'),
    dict(type='atomnas_mm.BNRecalibrationHook', num_batches=recalib_batches),
]
