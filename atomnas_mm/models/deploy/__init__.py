"""The fused inference form (``AtomNASNet.switch_to_deploy``)."""
from .fold import FuseError, bn_scale_shift, fold_conv_bn
from .fused import (DEPLOY_DEFAULTS, ONNX_DEFAULTS, FusedAtomicBlock, FusedFirstBlock,
                    check_layout, fuse_blocks, fuse_conv_bn, fuse_conv_bn_act)

__all__ = ['DEPLOY_DEFAULTS', 'FuseError', 'ONNX_DEFAULTS', 'FusedAtomicBlock',
           'FusedFirstBlock', 'bn_scale_shift', 'check_layout',
           'fold_conv_bn', 'fuse_blocks', 'fuse_conv_bn', 'fuse_conv_bn_act']
