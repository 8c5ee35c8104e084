# AtomNAS-C's search to a budget: at most 360M MACs (224x224, 1000 classes)
# with every kernel's width a multiple of 8, reached by epoch 262 of 350;
# the remaining epochs train the final net with no more removal. lambda is
# C's 1.0e-4 (ramped over 25 epochs); after the ramp the net follows a
# planned descent to the target (dead atoms first, then the weakest
# relative to their block);
# no lambda sweep.
# bash tools/dist_train.sh configs/atomnas/atomnas_c_budget_imagenet.py 32
_base_ = ['./atomnas_c_imagenet.py']
optim_wrapper = dict(
    penalty=dict(weight=1.0e-4, ramp_epochs=25, input_size=224, cost='macs',
                 target=dict(macs=360e6), target_by=0.75))
custom_hooks = [
    dict(type='atomnas_mm.DynamicShrinkHook', threshold=1e-3, delta=1e6,
         interval=1, input_size=224, channel_divisor=8),
    dict(type='atomnas_mm.EMAHook', momentum={{_base_.ema_momentum}},
         priority='ABOVE_NORMAL'),
    dict(type='atomnas_mm.BNRecalibrationHook', num_batches=64),
]
