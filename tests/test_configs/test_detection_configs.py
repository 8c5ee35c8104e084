"""The detection configs' FPN / mapper widths are literal lists; they must
agree with the backbone's stage channels."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from atomnas_mm.models import AtomNASNet
from tests.conftest import ROOT

CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'mask_rcnn_atomnas',
                                    '*.py')))


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_neck_in_channels_match_the_backbone(path):
    cfg = Config.fromfile(path)
    backbone = cfg.model.backbone
    # A searched net keeps the supernet's stage widths, so a config that
    # takes its net from a checkpoint is checked against the supernet.
    arch = backbone.arch if backbone.arch is not None else 'supernet'
    arch = arch.to_dict() if hasattr(arch, 'to_dict') else arch
    assert list(cfg.model.neck.in_channels) == AtomNASNet.channels_of(
        arch, backbone.out_indices)
