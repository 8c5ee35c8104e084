# AtomNAS-B+: the published AtomNAS-B retrained from scratch with Swish
# and SE (ratio 0.5) in every block, dropout 0.28, 250 epochs
# (paper: 329M MACs, 5.5M params, 77.2% top-1). Any searched spec works:
#   --cfg-options model.backbone.arch=path/to/searched_arch.json
_base_ = ['../_base_/atomnas_imagenet_plus.py']
model = dict(backbone=dict(arch='atomnas_b'))
