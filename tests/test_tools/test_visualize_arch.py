"""tools/analysis_tools/visualize_arch.py: the Fig. 5 / Fig. 6 drawings."""
import json
import os.path as osp
import sys

import pytest

from atomnas_mm.models.arch import SpecError, load_spec
from tests.conftest import ROOT, TINY_SPEC
from tests.test_tools.test_export_arch import tiny_search

sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis_tools'))
import visualize_arch  # noqa: E402

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def check_png(path, min_height=300, min_width=600):
    """A real PNG that matplotlib reads back, of a sensible size, and not
    blank."""
    import matplotlib.image as mpimg
    assert osp.isfile(path), path
    with open(path, 'rb') as f:
        assert f.read(8) == PNG_SIGNATURE
    assert osp.getsize(path) > 10_000
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert img.shape[0] >= min_height and img.shape[1] >= min_width
    assert img[..., :3].std() > 0.05  # something was drawn


@pytest.fixture(scope='module')
def search_dir(tmp_path_factory, digits_root):
    return tiny_search(tmp_path_factory, digits_root)


def test_atomnas_c_against_supernet(tmp_path, capsys):
    arch, kernels = visualize_arch.main(['atomnas_c', '--supernet',
                                         'supernet', '--out-dir',
                                         str(tmp_path)])
    assert arch == str(tmp_path / 'atomnas_c_arch.png')
    assert kernels == str(tmp_path / 'atomnas_c_kernels.png')
    out = capsys.readouterr().out
    assert arch in out and kernels in out
    check_png(arch)
    check_png(kernels)
    # Fig. 5 is wide (21 bars), Fig. 6 has two panels: taller.
    import matplotlib.image as mpimg
    a, k = mpimg.imread(arch), mpimg.imread(kernels)
    assert a.shape[1] > a.shape[0] and k.shape[0] > a.shape[0]


def test_default_supernets():
    c, name = visualize_arch.default_supernet(load_spec('atomnas_c'))
    assert name == 'supernet' and c == load_spec('supernet')
    a, name = visualize_arch.default_supernet(load_spec('atomnas_a'))
    assert name == 'supernet_stem16' and a == load_spec('supernet_stem16')
    # A small demo spec: 6 x C_in atoms for each of kernels 3, 5, 7.
    tiny, name = visualize_arch.default_supernet(load_spec(TINY_SPEC))
    assert name.startswith('derived')
    assert [b.kernels for b in tiny.blocks] == [
        {3: 6 * c, 5: 6 * c, 7: 6 * c}
        for c in (b['in_channels'] for b in TINY_SPEC['blocks'])]


def test_search_checkpoint(search_dir, tmp_path, capsys):
    supernet = tmp_path / 'tiny.json'
    load_spec(TINY_SPEC).dump(str(supernet))
    ckpt = osp.join(search_dir, 'epoch_2.pth')
    arch, kernels = visualize_arch.main([ckpt, '--supernet', str(supernet),
                                         '--show-title', 'tiny search'])
    # Default out dir: next to the checkpoint, named after it.
    assert arch == osp.join(search_dir, 'epoch_2_arch.png')
    assert kernels == osp.join(search_dir, 'epoch_2_kernels.png')
    check_png(arch, min_width=500)
    check_png(kernels, min_width=500)


def test_spec_json_with_derived_supernet(search_dir, tmp_path):
    arch, kernels = visualize_arch.main(
        [osp.join(search_dir, 'searched_arch.json'), '--out-dir',
         str(tmp_path)])
    assert osp.basename(arch) == 'searched_arch_arch.png'
    check_png(kernels, min_width=500)


def test_identity_block_drawn(tmp_path):
    spec = json.loads(json.dumps(TINY_SPEC))
    spec['blocks'][1]['kernels'] = {}  # all atoms died: identity
    path = visualize_arch.draw_kernel_shares(
        spec, TINY_SPEC, str(tmp_path / 'k.png'), None)
    check_png(path, min_width=500)


def test_more_atoms_than_supernet_is_one_line_error(tmp_path):
    with pytest.raises(SpecError, match=r'blocks\[0\].kernels.3'):
        visualize_arch.draw_kernel_shares('supernet', 'atomnas_c',
                                          str(tmp_path / 'x.png'))
    with pytest.raises(SystemExit) as e:
        visualize_arch.main(['supernet', '--supernet', 'atomnas_c',
                             '--out-dir', str(tmp_path)])
    assert 'blocks[0].kernels.3' in str(e.value)
    assert '\n' not in str(e.value)
    with pytest.raises(SystemExit, match='4 blocks but the supernet has 21'):
        visualize_arch.main([_dump(tmp_path, TINY_SPEC), '--supernet',
                             'supernet'])
    assert not list(tmp_path.glob('*.png'))


def _dump(tmp_path, spec):
    path = tmp_path / 'spec.json'
    load_spec(spec).dump(str(path))
    return str(path)


def test_checkpoint_without_spec(tmp_path):
    import torch
    path = tmp_path / 'weights.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}}, path)
    with pytest.raises(SystemExit) as e:
        visualize_arch.main([str(path)])
    msg = str(e.value)
    assert 'weights.pth' in msg and 'atomnas_spec' in msg and '\n' not in msg


def test_unknown_name(tmp_path):
    with pytest.raises(SystemExit, match='no shipped spec'):
        visualize_arch.main(['atomnas_z', '--out-dir', str(tmp_path)])
