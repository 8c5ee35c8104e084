import json
import os.path as osp
import sys

import pytest

from tests.conftest import ROOT, config_path

sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis_tools'))
import get_flops  # noqa: E402


def _json(capsys, *argv):
    get_flops.main([*argv, '--json'])
    return json.loads(capsys.readouterr().out)


def test_spec_name(capsys):
    assert _json(capsys, 'atomnas_c') == dict(
        macs=359_864_205, params=4_741_256, params_with_bn=4_782_696)


def test_spec_file_and_shape(capsys, tmp_path):
    from atomnas_mm.models.arch import count, load_spec
    path = tmp_path / 'a.json'
    load_spec('atomnas_a').dump(str(path))
    out = _json(capsys, str(path), '--shape', '320', '256')
    assert out == count('atomnas_a', (320, 256)).as_dict()


def test_config(capsys):
    from atomnas_mm.models.arch import count
    from mmengine.config import Config
    cfg = Config.fromfile(config_path('atomnas', 'atomnas_demo_digits.py'))
    out = _json(capsys, config_path('atomnas', 'atomnas_demo_digits.py'),
                '--shape', '16')
    assert out == count(cfg.model.backbone.arch, 16, 10).as_dict()


def test_check_against_mmengine(capsys):
    get_flops.main(['atomnas_a', '--check'])
    assert 'identical' in capsys.readouterr().out


def test_bad_spec_is_one_line_error(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps(dict(stem_channels=16,
                                   first_block=dict(out_channels=16),
                                   blocks=[dict(in_channels=16,
                                                out_channels=24, stride=2,
                                                kernels={'4': 8})])))
    with pytest.raises(SystemExit, match=r'blocks\[0\].kernels'):
        get_flops.main([str(bad)])


def test_config_is_counted_at_its_own_input_size(capsys):
    from atomnas_mm.models.arch import count
    from mmengine.config import Config
    path = config_path('atomnas', 'atomnas_demo_digits.py')
    cfg = Config.fromfile(path)
    get_flops.main([path])
    out = capsys.readouterr().out
    assert 'input:   16x16  (test pipeline Resize.scale)' in out
    assert f'{count(cfg.model.backbone.arch, 16, 10).macs:,}' in out
    get_flops.main([config_path('atomnas', 'atomnas_c_imagenet.py')])
    assert 'input:   224x224  (test pipeline CenterCrop.crop_size)' in \
        capsys.readouterr().out


def test_search_checkpoint_and_bad_files(capsys, tmp_path):
    import torch
    import torchvision

    from atomnas_mm.models.arch import count, load_spec
    spec = load_spec('atomnas_b')
    ckpt = tmp_path / 'deploy.pth'
    torch.save(dict(state_dict={}, meta=dict(atomnas_spec=spec.to_dict())),
               ckpt)
    assert _json(capsys, str(ckpt)) == count(spec).as_dict()
    foreign = tmp_path / 'resnet.pth'
    torch.save(torchvision.models.resnet18().state_dict(), foreign)
    with pytest.raises(SystemExit, match='resnet.pth: holds no AtomNAS spec'):
        get_flops.main([str(foreign)])
    binary = tmp_path / 'spec.json'
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(SystemExit, match='spec.json: not a UTF-8 text file'):
        get_flops.main([str(binary)])
