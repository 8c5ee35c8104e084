# The paper's wording, taken literally: the detection head "on top of the
# last feature map" only (320 channels, stride 32), no FPN pyramid: one
# level for the RPN anchors and the RoI extractors.
_base_ = ['./mask_rcnn_atomnas_c_fpn_coco.py']


def stage_channels(arch, out_indices):
    from atomnas_mm.models.backbones import AtomNASNet
    return AtomNASNet.channels_of(arch, out_indices)


out_indices = (6, )
model = dict(
    backbone=dict(out_indices=out_indices),
    neck=dict(_delete_=True, type='ChannelMapper',
              in_channels=stage_channels('supernet', out_indices),
              kernel_size=1, out_channels=256, num_outs=1),
    rpn_head=dict(anchor_generator=dict(scales=[2, 4, 8, 16, 32],
                                        strides=[32])),
    roi_head=dict(
        bbox_roi_extractor=dict(featmap_strides=[32]),
        mask_roi_extractor=dict(featmap_strides=[32])))
