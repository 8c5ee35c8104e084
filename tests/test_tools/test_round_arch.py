"""tools/analysis_tools/round_arch.py: widths rounded after the fact."""
import os.path as osp
import sys

import pytest

from tests.conftest import ROOT, config_path

sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis_tools'))
import round_arch  # noqa: E402


def test_published_net_rounded(capsys, tmp_path):
    from atomnas_mm.models.arch import count, first_not_divisible, load_spec
    out = str(tmp_path / 'c8.json')
    rounded = round_arch.main(['atomnas_c', '--divisor', '8', '--out', out,
                               '--supernet', 'supernet', '--per-block'])
    printed = capsys.readouterr().out
    assert load_spec(out) == rounded
    assert first_not_divisible(rounded, 8) is None
    assert 'MACs:    359,864,205 -> 378,278,160' in printed
    assert '    0   16->24    2 k3:15 k5:23 k7:13      k3:16 k5:24 k7:16' \
        in printed
    assert count(rounded).macs == 378_278_160


def test_config_counted_at_its_input_size(capsys):
    path = config_path('atomnas', 'atomnas_demo_digits.py')
    round_arch.main([path, '--divisor', '16'])
    printed = capsys.readouterr().out
    assert 'input 16x16, 10 classes' in printed
    assert '+0.00%' in printed  # the demo supernet is already divisible


def test_rounding_beyond_the_supernet_is_refused(tmp_path):
    from atomnas_mm.models.arch import load_spec
    spec = load_spec('atomnas_c')
    spec.blocks[0].kernels[3] = 95  # the supernet has 96
    path = str(tmp_path / 's.json')
    spec.dump(path)
    with pytest.raises(SystemExit, match=r'blocks\[0\].kernels.3: rounding '
                       "95 up to 128 exceeds the supernet's 96"):
        round_arch.main([path, '--divisor', '64', '--supernet', 'supernet'])
