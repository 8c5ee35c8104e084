# Train a fixed (searched) net from scratch: the search recipe without the
# penalty and the shrink hook. EMA weights still get BN recalibration.
_base_ = ['./atomnas_imagenet_search.py']
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='atomnas_mm.AtomNASOptimWrapperConstructor',
    optimizer=dict(type='atomnas_mm.AtomNASRMSprop', lr=0.128, alpha=0.9,
                   momentum=0.9, eps=1e-3, weight_decay=1e-5))
recalib_batches = 40
custom_hooks = [
    dict(type='atomnas_mm.EMAHook', momentum={{_base_.ema_momentum}},
         priority='ABOVE_NORMAL'),
    dict(type='atomnas_mm.BNRecalibrationHook', num_batches=recalib_batches),
]
