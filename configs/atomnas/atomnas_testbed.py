# AtomNAS on the test bed: 32 classes, each the conjunction of two small
# key motifs among distractors, in random colours on textured backgrounds,
# 32x32 RGB, 50k training / 10k validation images generated without
# downloads (tools/dataset_converters/make_testbed.py; the data set renders
# them into data/testbed on first use, then memory-maps the arrays).
# benchmarks/testbed_check.py trains this supernet thinned to 0.25x / 0.5x
# / 1x of its atoms from scratch and checks that each step in width shows
# beyond seed noise; benchmarks/ablations.py compares search methods on it.
_base_ = ['mmpretrain::_base_/default_runtime.py']

# atomnas_mm.datasets is also found by the registry on first use; naming it
# here makes a config-only run independent of that.
custom_imports = dict(imports=['atomnas_mm', 'atomnas_mm.datasets'],
                      allow_failed_imports=False)

# The supernet for 32x32: the demo's block structure (stem 16, fixed first
# block, searchable blocks with 3/5/7 kernels at 6 x C_in atoms each) in
# three stages at 8x8, 4x4 and 4x4: the last stage keeps 4x4 so that its
# 5x5 and 7x7 kernels still see more than 3x3 does.
testbed_supernet = dict(
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
        dict(in_channels=40, out_channels=64, stride=1,
             kernels={'3': 240, '5': 240, '7': 240}),
        dict(in_channels=64, out_channels=64, stride=1,
             kernels={'3': 384, '5': 384, '7': 384}),
    ],
    head_channels=256,
    activation='relu',
    se_ratio=0.0)

num_classes = 32
input_size = 32
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='atomnas_mm.AtomNASNet',
        arch=testbed_supernet,
        norm_cfg=dict(type='BN', momentum=0.1, eps=1e-3)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=num_classes,
        in_channels=256,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                  mode='original'),
        topk=(1, )))

# Images come as RGB arrays (like mmpretrain's CIFAR): no to_rgb. Mean and
# std measured on 10k training images.
data_preprocessor = dict(
    num_classes=num_classes,
    mean=[126.9, 127.9, 126.8],
    std=[57.7, 58.3, 57.8],
    to_rgb=False)
data_root = 'data/testbed'
# The set (all of it is generated; a run reads the first train_images).
testbed = dict(seed=0, num_train=50000, num_val=10000, size=input_size)
train_images = 25600
train_pipeline = [dict(type='PackInputs')]
test_pipeline = [dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    dataset=dict(type='atomnas_mm.TestbedDataset', data_root=data_root,
                 split='train', indices=train_images,
                 pipeline=train_pipeline, **testbed),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=256,
    num_workers=0,
    dataset=dict(type='atomnas_mm.TestbedDataset', data_root=data_root,
                 split='val', test_mode=True, pipeline=test_pipeline,
                 **testbed),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# One pass over the images: every step sees new ones, so width is measured
# by how much a net learns, not by how much it overfits.
max_epochs = 1
# The search: FLOPs-aware L1 on the depthwise BN gammas, ramped up over the
# first fifth of the run (benchmarks/ablations.py calibrates the weight to
# each MACs target; a budget adds target=dict(macs=...)).
optim_wrapper = dict(
    type='atomnas_mm.AtomNASOptimWrapper',
    optimizer=dict(type='atomnas_mm.AtomNASRMSprop', lr=0.005, alpha=0.9,
                   momentum=0.9, eps=1e-3, weight_decay=1e-5),
    penalty=dict(weight=2e-3, ramp_epochs=0.2, input_size=input_size,
                 num_classes=num_classes),
    constructor='atomnas_mm.AtomNASOptimWrapperConstructor')
auto_scale_lr = dict(base_batch_size=64, enable=False)
# Warm-up and cosine decay by iteration (a run is one or a few epochs).
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0,
         end=0.05, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0.05,
         end=max_epochs, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='atomnas_mm.CheckpointHook', interval=1,
                    max_keep_ckpts=2, save_last=True))
custom_hooks = [
    # Dead atoms (by alpha_hat, the EMA copy's gamma) removed every 50
    # iterations once they cost 20k MACs (the supernet is 11.5M MACs at
    # 32x32).
    dict(type='atomnas_mm.DynamicShrinkHook', threshold=1e-2, delta=2e4,
         interval=50, by_epoch=False, input_size=input_size,
         num_classes=num_classes),
    dict(type='atomnas_mm.EMAHook', momentum=0.01, priority='ABOVE_NORMAL'),
    # EMA weights need BN statistics of their own before evaluation.
    dict(type='atomnas_mm.BNRecalibrationHook', num_batches=10),
]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
