# AtomNAS-A+: the published AtomNAS-A retrained from scratch with Swish
# and SE (ratio 0.5) in every block, dropout 0.28, 250 epochs
# (paper: 260M MACs, 4.7M params, 76.3% top-1). Any searched spec works:
#   --cfg-options model.backbone.arch=path/to/searched_arch.json
_base_ = ['../_base_/atomnas_imagenet_plus.py']
model = dict(backbone=dict(arch='atomnas_a'))
