# AtomNAS-C: search + train in one pass from the supernet, lambda 1.0e-4
# (paper: 360M MACs, 4.7M params, 75.9% top-1).
# bash tools/dist_train.sh configs/atomnas/atomnas_c_imagenet.py 32
_base_ = ['../_base_/atomnas_imagenet_search.py']
model = dict(backbone=dict(arch='supernet'))
optim_wrapper = dict(penalty=dict(weight=1.0e-4))
recalib_batches = 64  # 16 x 256 images per GPU in the paper = 64 x 64
custom_hooks = [
    dict(type='atomnas_mm.DynamicShrinkHook', threshold=1e-3, delta=1e6,
         interval=1, input_size=224),
    dict(type='atomnas_mm.EMAHook', momentum={{_base_.ema_momentum}},
         priority='ABOVE_NORMAL'),
    dict(type='atomnas_mm.BNRecalibrationHook', num_batches=recalib_batches),
]
