"""The OpenMMLab stack imports and its compiled ops work on this torch."""
import torch


def test_stack_imports_with_pinned_versions():
    import mmcv
    import mmdet
    import mmengine
    import mmpretrain
    import mmcv._ext  # noqa: F401  (compiled ops)
    import mmdet.datasets  # noqa: F401
    import mmdet.models  # noqa: F401
    import mmpretrain.models  # noqa: F401
    import torchvision  # noqa: F401
    assert mmcv.__version__ == '2.1.0'
    assert mmengine.__version__ == '0.10.7'
    assert mmpretrain.__version__ == '1.2.0'
    assert mmdet.__version__ == '3.3.0'
    assert torch.__version__.startswith('2.14.1')


def test_roi_align_matches_hand_computed_value():
    from mmcv.ops import roi_align
    feat = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    # Box (0, 0)-(2, 2) with aligned=True covers [-0.5, 1.5]^2; one sample
    # at its centre (0.5, 0.5) interpolates pixels 0, 1, 4, 5 equally.
    rois = torch.tensor([[0., 0., 0., 2., 2.]])
    out = roi_align(feat, rois, (1, 1), spatial_scale=1.0, sampling_ratio=1,
                    pool_mode='avg', aligned=True)
    assert out.shape == (1, 1, 1, 1)
    assert out.item() == (0 + 1 + 4 + 5) / 4
    # 2x2 output of box (0, 0)-(4, 4): sample centres at 0.5 and 2.5.
    out = roi_align(feat, torch.tensor([[0., 0., 0., 4., 4.]]), (2, 2), 1.0,
                    1, 'avg', True)
    expected = torch.tensor([[2.5, 4.5], [10.5, 12.5]])
    assert torch.allclose(out[0, 0], expected)
