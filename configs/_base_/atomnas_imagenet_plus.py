# The "+" nets: a searched spec retrained from scratch with Swish and SE
# (ratio 0.5) in every block, dropout 0.28, 250 epochs. Variants set arch.
_base_ = ['./atomnas_imagenet_retrain.py']
max_epochs = 250
model = dict(
    backbone=dict(act='swish', se_ratio=0.5),
    head=dict(dropout_rate=0.28))
train_cfg = dict(max_epochs=max_epochs)
