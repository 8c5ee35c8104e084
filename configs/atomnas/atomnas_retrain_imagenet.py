# Train a given searched spec from scratch, without search (350 epochs):
#   python tools/train.py configs/atomnas/atomnas_retrain_imagenet.py \
#     --cfg-options model.backbone.arch=work_dirs/atomnas_c_imagenet/searched_arch.json
# arch takes a shipped name (atomnas_a/b/c) or a spec file.
_base_ = ['../_base_/atomnas_imagenet_retrain.py']
model = dict(backbone=dict(arch='atomnas_c'))
