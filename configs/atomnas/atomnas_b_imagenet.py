# AtomNAS-B: search + train in one pass from the supernet, lambda 1.2e-4
# (paper: 326M MACs, 4.4M params, 75.5% top-1).
# bash tools/dist_train.sh configs/atomnas/atomnas_b_imagenet.py 32
_base_ = ['../_base_/atomnas_imagenet_search.py']
model = dict(backbone=dict(arch='supernet'))
optim_wrapper = dict(penalty=dict(weight=1.2e-4))
