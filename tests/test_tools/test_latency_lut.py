"""tools/analysis_tools/latency_lut.py: one tiny smoke run of the
measurement (the interpolation and JSON are tested on hand-made tables in
tests/test_models/test_arch/test_cost_model.py)."""
import json
import os.path as osp
import sys

import pytest

from tests.conftest import ROOT, TINY_SPEC

sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis_tools'))
import latency_lut  # noqa: E402


def test_smoke_on_the_tiny_spec(tmp_path, capsys):
    from atomnas_mm.models.arch import (LatencyTable, build_cost_model,
                                        load_spec)
    spec = str(tmp_path / 'tiny.json')
    load_spec(TINY_SPEC).dump(spec)
    out = str(tmp_path / 'lut.json')
    latency_lut.main([spec, '--out', out, '--input-size', '16', '--step',
                      '16', '--reps', '1', '--warmup', '0', '--threads', '1',
                      '--num-classes', '10'])
    table = LatencyTable.load(out)
    meta = json.load(open(out))
    assert meta['input_size'] == [16, 16] and meta['batch'] == 1
    assert meta['threads'] == 1 and meta['device'] == 'cpu'
    assert meta['torch'] and meta['check']['supernet_ms'] > 0
    # Block 1 (16 atoms per kernel) measured at 1 and 16 atoms.
    assert table.blocks[1].kernels[5].atoms == [1, 16]
    assert table.blocks[1].identity_ms > 0 and table.blocks[0].identity_ms == 0
    cm = build_cost_model('latency', 16, 10, lut=out)
    assert cm.total(TINY_SPEC) == pytest.approx(
        meta['check']['predicted_ms'])
    assert 'written' in capsys.readouterr().out


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit, match='no such file'):
        latency_lut.main([str(tmp_path / 'none.json'), '--out',
                          str(tmp_path / 'x.json')])
