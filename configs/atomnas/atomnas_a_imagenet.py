# AtomNAS-A: search + train in one pass from the stem-16 supernet,
# lambda 1.8e-4 (paper: 258M MACs, 3.9M params, 74.6% top-1).
# bash tools/dist_train.sh configs/atomnas/atomnas_a_imagenet.py 32
_base_ = ['../_base_/atomnas_imagenet_search.py']
model = dict(backbone=dict(arch='supernet_stem16'))
optim_wrapper = dict(penalty=dict(weight=1.8e-4))
