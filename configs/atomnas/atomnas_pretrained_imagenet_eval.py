# Evaluate a published AtomNAS net (A, B, C, A+, B+, C+) from the authors'
# weights the way they do: EMA weights, BN statistics recomputed over
# 131,072 training images (training augmentation, a cumulative average;
# their eval config: 256 batches of 512 per process), then top-1/top-5 on
# ImageNet val at 224x224 (resize 256, center crop 224, bicubic).
#   python tools/model_converters/atomnas_to_mmpretrain.py atomnas_c.pt atomnas_c_mmpretrain.pth
#   bash tools/dist_test.sh configs/atomnas/atomnas_pretrained_imagenet_eval.py atomnas_c_mmpretrain.pth 8
#   python tools/test.py configs/atomnas/atomnas_pretrained_imagenet_eval.py atomnas_c_mmpretrain.pth
# tools/test.py builds the net from the checkpoint's spec (activation and SE
# included), whatever `arch` says here. Each process recalibrates on its
# own 2048 batches of 64 (= 131,072 images, as each of theirs did) and the
# statistics are averaged across processes; fewer images:
# --cfg-options custom_hooks.0.num_batches=N.
_base_ = ['../_base_/atomnas_imagenet_retrain.py']
model = dict(backbone=dict(arch='atomnas_c'))
custom_hooks = [
    dict(type='atomnas_mm.BNRecalibrationHook', num_batches=2048),
]
