# Mask R-CNN with AtomNAS-A (paper: detect mAP 32.7, seg mAP 30.1 on COCO val2017).
# First search AtomNAS-A on ImageNet (configs/atomnas/atomnas_a_imagenet.py);
# its work dir then holds deploy.pth (EMA weights, BN recalibrated, spec inside):
#   bash tools/dist_train.sh configs/mask_rcnn_atomnas/mask_rcnn_atomnas_a_fpn_coco.py 8
# Another checkpoint: --cfg-options checkpoint=... is not enough (it is read
# when the config is parsed); set model.backbone.init_cfg.checkpoint=PATH.
# The authors' published AtomNAS-A weights work the same way once
# converted (docs/en/user_guides/pretrained.md):
#   python tools/model_converters/atomnas_to_mmpretrain.py atomnas_a.pt atomnas_a_mmpretrain.pth
#   bash tools/dist_train.sh configs/mask_rcnn_atomnas/mask_rcnn_atomnas_a_fpn_coco.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=atomnas_a_mmpretrain.pth
_base_ = ['../_base_/mask_rcnn_atomnas_fpn_coco.py']
checkpoint = 'work_dirs/atomnas_a_imagenet/deploy.pth'
model = dict(backbone=dict(init_cfg=dict(checkpoint=checkpoint)))
