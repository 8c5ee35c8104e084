# Mask R-CNN with AtomNAS-C (paper: detect mAP 34.1, seg mAP 31.4 on COCO val2017).
# First search AtomNAS-C on ImageNet (configs/atomnas/atomnas_c_imagenet.py);
# its work dir then holds deploy.pth (EMA weights, BN recalibrated, spec inside):
#   bash tools/dist_train.sh configs/mask_rcnn_atomnas/mask_rcnn_atomnas_c_fpn_coco.py 8
# Another checkpoint: --cfg-options checkpoint=... is not enough (it is read
# when the config is parsed); set model.backbone.init_cfg.checkpoint=PATH.
# The authors' published AtomNAS-C weights work the same way once
# converted (docs/en/user_guides/pretrained.md):
#   python tools/model_converters/atomnas_to_mmpretrain.py atomnas_c.pt atomnas_c_mmpretrain.pth
#   bash tools/dist_train.sh configs/mask_rcnn_atomnas/mask_rcnn_atomnas_c_fpn_coco.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=atomnas_c_mmpretrain.pth
_base_ = ['../_base_/mask_rcnn_atomnas_fpn_coco.py']
checkpoint = 'work_dirs/atomnas_c_imagenet/deploy.pth'
model = dict(backbone=dict(init_cfg=dict(checkpoint=checkpoint)))
