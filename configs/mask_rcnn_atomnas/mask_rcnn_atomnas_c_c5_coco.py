# The paper's wording, taken literally: the detection head "on top of the
# last feature map" only (320 channels, stride 32), no FPN pyramid: one
# level for the RPN anchors and the RoI extractors.
_base_ = ['./mask_rcnn_atomnas_c_fpn_coco.py']


out_indices = (6, )
model = dict(
    backbone=dict(out_indices=out_indices),
    neck=dict(_delete_=True, type='ChannelMapper',
              in_channels=[320],  # stage 6
              kernel_size=1, out_channels=256, num_outs=1),
    rpn_head=dict(anchor_generator=dict(scales=[2, 4, 8, 16, 32],
                                        strides=[32])),
    roi_head=dict(
        bbox_roi_extractor=dict(featmap_strides=[32]),
        mask_roi_extractor=dict(featmap_strides=[32])))
