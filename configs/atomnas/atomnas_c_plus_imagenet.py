# AtomNAS-C+: the published AtomNAS-C retrained from scratch with Swish
# and SE (ratio 0.5) in every block, dropout 0.28, 250 epochs
# (paper: 363M MACs, 5.9M params, 77.6% top-1). Any searched spec works:
#   --cfg-options model.backbone.arch=path/to/searched_arch.json
_base_ = ['../_base_/atomnas_imagenet_plus.py']
model = dict(backbone=dict(arch='atomnas_c'))
