# The digits demo searched to a budget: at most 1.0M MACs at 16x16 (10
# classes), every kernel's width a multiple of 8, reached by three quarters
# of the 16 epochs; the last quarter trains the final net, no more removal.
#   python tools/run_demo.py --config configs/atomnas/atomnas_demo_digits_budget.py
#   python tools/train.py configs/atomnas/atomnas_demo_digits_budget.py
_base_ = ['./atomnas_demo_digits.py']

# The penalty's options hold the measure and the target: lambda is `weight`
# (ramped over 2 epochs as in the demo) and the net follows a planned
# descent to the target after the ramp (dead atoms first, then the
# weakest relative to their block); lambda is 0 once the target is reached.
optim_wrapper = dict(
    penalty=dict(weight=2e-3, ramp_epochs=2, input_size=16, num_classes=10,
                 cost='macs', target=dict(macs=1.0e6), target_by=0.75))
custom_hooks = [
    # Dead atoms checked every 5 iterations (23 per epoch); widths stay
    # multiples of 8 (the demo supernet's 96/144/240/480 are).
    dict(type='atomnas_mm.DynamicShrinkHook', threshold=1e-2, delta=1e4,
         interval=5, by_epoch=False, channel_divisor=8),
    dict(type='atomnas_mm.EMAHook', momentum=0.01, priority='ABOVE_NORMAL'),
    dict(type='atomnas_mm.BNRecalibrationHook', num_batches=10),
]
