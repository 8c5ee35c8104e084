# The "+" nets: a searched spec retrained from scratch with Swish and SE
# (ratio 0.5) in every block, dropout 0.28, 250 epochs. Variants set arch.
_base_ = ['./atomnas_imagenet_retrain.py']
max_epochs = 250
model = dict(
    backbone=dict(act='swish', se_ratio=0.5),
    head=dict(dropout_rate=0.28))
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='atomnas_mm.EpochStepLR', step_size=2.4, gamma=0.97,
         by_epoch=True, begin=5, end=max_epochs,
         convert_to_iter_based=True),
]
