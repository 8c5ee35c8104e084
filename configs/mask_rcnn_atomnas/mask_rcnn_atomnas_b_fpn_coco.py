# Mask R-CNN with AtomNAS-B (paper: detect mAP 33.6, seg mAP 30.8 on COCO val2017).
# First search AtomNAS-B on ImageNet (configs/atomnas/atomnas_b_imagenet.py);
# its work dir then holds deploy.pth (EMA weights, BN recalibrated, spec inside):
#   bash tools/dist_train.sh configs/mask_rcnn_atomnas/mask_rcnn_atomnas_b_fpn_coco.py 8
# Another checkpoint: --cfg-options checkpoint=... is not enough (it is read
# when the config is parsed); set model.backbone.init_cfg.checkpoint=PATH.
# The authors' published AtomNAS-B weights work the same way once
# converted (docs/en/user_guides/pretrained.md):
#   python tools/model_converters/atomnas_to_mmpretrain.py atomnas_b.pt atomnas_b_mmpretrain.pth
#   bash tools/dist_train.sh configs/mask_rcnn_atomnas/mask_rcnn_atomnas_b_fpn_coco.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=atomnas_b_mmpretrain.pth
_base_ = ['../_base_/mask_rcnn_atomnas_fpn_coco.py']
checkpoint = 'work_dirs/atomnas_b_imagenet/deploy.pth'
model = dict(backbone=dict(init_cfg=dict(checkpoint=checkpoint)))
