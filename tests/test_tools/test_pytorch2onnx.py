"""tools/deployment/pytorch2onnx.py: fused exports that onnxruntime runs
as PyTorch does, and one-line errors."""
import importlib.util
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

from atomnas_mm.models.checkpoint import load_checkpoint_file
from tests.conftest import ROOT, TINY_SPEC, config_path

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

_spec = importlib.util.spec_from_file_location(
    'pytorch2onnx', osp.join(ROOT, 'tools', 'deployment', 'pytorch2onnx.py'))
pytorch2onnx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pytorch2onnx)

DEMO = config_path('atomnas', 'atomnas_demo_digits.py')


@pytest.fixture
def tiny_json(tmp_path):
    path = tmp_path / 'tiny.json'
    path.write_text(json.dumps(TINY_SPEC))
    return str(path)


def _inputs(path):
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    return session, [(i.name, i.shape) for i in session.get_inputs()]


def test_fused_classifier_dynamic_and_verified(tmp_path, tiny_json):
    out = str(tmp_path / 'tiny.onnx')
    result = pytorch2onnx.main([
        DEMO, '--output-file', out, '--shape', '16', '16', '--verify',
        '--dynamic-export', '--cfg-options', f'model.backbone.arch={tiny_json}',
        'model.head.in_channels=64'])
    assert result['outputs'] == ['logits'] and result['max_rel_diff'] < 1e-4
    onnx.checker.check_model(onnx.load(out))
    session, inputs = _inputs(out)
    assert inputs == [('input', ['batch', 3, 'height', 'width'])]
    logits = session.run(None, {'input': np.random.rand(3, 3, 24, 20)
                                .astype(np.float32)})[0]
    assert logits.shape == (3, 10)
    # The graph is the fused net: no BatchNormalization node left.
    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert 'BatchNormalization' not in ops and 'Conv' in ops


def test_backbone_only_gives_the_feature_maps(tmp_path, tiny_json, capsys):
    out = str(tmp_path / 'backbone.onnx')
    result = pytorch2onnx.main([
        DEMO, '--output-file', out, '--shape', '32', '32', '--verify',
        '--backbone-only', '--divisor', '16', '--cfg-options',
        f'model.backbone.arch={tiny_json}',
        'model.backbone.out_indices=(0,1,2)'])
    assert result['outputs'] == ['stage0', 'stage1', 'stage2']
    assert result['max_rel_diff'] < 1e-4
    session, inputs = _inputs(out)
    assert inputs == [('input', [1, 3, 32, 32])]  # static without dynamic
    shapes = [o.shape for o in session.run(
        None, {'input': np.zeros((1, 3, 32, 32), np.float32)})]
    assert shapes == [(1, 8, 16, 16), (1, 16, 8, 8), (1, 24, 4, 4)]
    assert 'multiples of 16' in capsys.readouterr().out


def test_trained_search_checkpoint(tmp_path, tmp_path_factory, digits_root):
    """The deploy.pth of a real search: built to its spec, its weights
    loaded strictly, and the exported logits are the eval model's."""
    from tests.test_tools.test_export_arch import tiny_search
    ckpt = osp.join(tiny_search(tmp_path_factory, digits_root), 'deploy.pth')
    out = str(tmp_path / 'searched.onnx')
    result = pytorch2onnx.main([
        DEMO, ckpt, '--output-file', out, '--shape', '16', '16',
        '--verify', '--cfg-options', 'model.head.in_channels=64'])
    assert result['max_rel_diff'] < 1e-4
    # Against the classifier loaded the ordinary way.
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    state = load_checkpoint_file(ckpt)
    cfg = Config.fromfile(DEMO)
    cfg.model.backbone.arch = state['meta']['atomnas_spec']
    cfg.model.head.in_channels = 64
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    model.load_state_dict(state['state_dict'])
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        ref = model.eval()(x, mode='tensor').numpy()
    got = _inputs(out)[0].run(None, {'input': x.numpy()})[0]
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    # The same checkpoint as a detector's backbone: the Mask R-CNN config
    # (arch None, Pretrained) takes spec and weights from it.
    det = config_path('mask_rcnn_atomnas', 'mask_rcnn_atomnas_c_fpn_coco.py')
    result = pytorch2onnx.main([
        det, ckpt, '--backbone-only', '--output-file',
        str(tmp_path / 'det.onnx'), '--shape', '32', '48', '--verify',
        '--cfg-options', 'model.backbone.out_indices=(1,2)'])
    assert result['outputs'] == ['stage1', 'stage2']
    assert result['max_rel_diff'] < 1e-4


def test_errors_are_one_line(tmp_path, tiny_json, capsys):
    out = str(tmp_path / 'x.onnx')
    broken = tmp_path / 'broken.py'
    broken.write_text('model = dict(\n')  # a syntax error
    cases = [
        ([str(tmp_path / 'none.py')], 'no such config file'),
        ([str(broken)], 'cannot be read as a config'),
        ([DEMO, str(tmp_path / 'none.pth')], 'no such checkpoint file'),
        ([DEMO, tiny_json], 'cannot be read as a checkpoint'),
    ]
    # A checkpoint of another net (the tiny spec's weights, no spec in it)
    # under the demo supernet's config.
    from atomnas_mm.models import AtomNASNet
    other = str(tmp_path / 'other.pth')
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in AtomNASNet(
        TINY_SPEC).state_dict().items()}}, other)
    cases.append(([DEMO, other], 'other.pth'))
    for argv, fragment in cases:
        with pytest.raises(SystemExit) as e:
            pytorch2onnx.main(argv + ['--output-file', out])
        msg = str(e.value.code)
        assert msg.startswith('error: ') and fragment in msg, msg
        assert '\n' not in msg
    # As a user runs it: no traceback, exit status 1.
    proc = subprocess.run(
        [sys.executable, 'tools/deployment/pytorch2onnx.py', DEMO, other,
         '--output-file', out], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith('error: ')
