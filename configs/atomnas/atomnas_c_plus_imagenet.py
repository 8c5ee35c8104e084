# AtomNAS-C+: the published AtomNAS-C retrained from scratch with Swish
# and SE (ratio 0.5) in every block, dropout 0.28, 250 epochs
# (paper: 363M MACs, 5.9M params, 77.6% top-1). Any searched spec works:
#   --cfg-options model.backbone.arch=path/to/searched_arch.json
_base_ = ['../_base_/atomnas_imagenet_retrain.py']
max_epochs = 250
model = dict(
    backbone=dict(arch='atomnas_c', act='swish', se_ratio=0.5),
    head=dict(dropout_rate=0.28))
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='atomnas_mm.EpochStepLR', step_size=2.4, gamma=0.97,
         by_epoch=True, begin=5, end=max_epochs,
         convert_to_iter_based=True),
]
