"""One cost measure: MACs / params / latency (hand-made table) / equal, and
the divisor helpers. Pure Python, no torch."""
import copy
import json

import pytest

from atomnas_mm.models.arch import (CostModelError, LatencyTable,
                                    build_cost_model, count,
                                    first_not_divisible, load_spec,
                                    round_spec)
from atomnas_mm.models.arch.cost_model import BlockTable, KernelCurve
from atomnas_mm.models.arch.spec import SpecError
from tests.conftest import TINY_SPEC


@pytest.mark.parametrize('se', [0.0, 0.5])
@pytest.mark.parametrize('cost', ['macs', 'params'])
def test_linear_totals_are_fixed_plus_atoms(cost, se):
    spec = load_spec('atomnas_c')
    spec.se_ratio = se
    cm = build_cost_model(cost, 224, 1000)
    report = count(spec, 224, 1000)
    assert cm.total(spec) == (report.macs if cost == 'macs' else
                              report.params)
    atoms = cm.atom_costs(spec)
    blocks = sum(cm.block_cost(spec, i, b.kernels)
                 for i, b in enumerate(spec.blocks))
    assert cm.total(spec) == cm.fixed(spec) + blocks
    if not se:  # exactly linear: one atom's cost is what its removal saves
        assert blocks == sum(n * atoms[(i, k)] for i, b in
                             enumerate(spec.blocks)
                             for k, n in b.kernels.items())
    # Removing one atom saves exactly its cost.
    less = copy.deepcopy(spec)
    less.blocks[5].kernels[3] -= 1
    assert cm.total(spec) - cm.total(less) == atoms[(5, 3)]


def test_macs_atom_cost_is_the_papers_without_se():
    cm = build_cost_model('macs', 224)
    assert cm.atom_costs('supernet')[(0, 3)] == \
        16 * 112 * 112 + 9 * 56 * 56 + 24 * 56 * 56


def test_equal_counts_in_macs_and_weighs_atoms_one():
    cm = build_cost_model('equal', 16, 10)
    assert cm.measure == 'macs' and cm.unit == 'MACs'
    assert cm.total(TINY_SPEC) == count(TINY_SPEC, 16, 10).macs
    assert set(cm.penalty_costs(TINY_SPEC).values()) == {1.0}


def test_fixed_minimum_and_total_with():
    cm = build_cost_model('macs', 16, 10)
    spec = load_spec(TINY_SPEC)
    empty = copy.deepcopy(spec)
    for b in empty.blocks:
        b.kernels = {}
    assert cm.fixed(spec) == count(empty, 16, 10).macs
    atoms = cm.atom_costs(spec)
    # Blocks 0 and 2 have no residual: each keeps `divisor` atoms of its
    # cheapest kernel (3).
    for d in (1, 8):
        assert cm.minimum(spec, d) == cm.fixed(spec) + d * (
            atoms[(0, 3)] + atoms[(2, 3)])
    live = {(1, 5): 4, (3, 7): 0}
    assert cm.total_with(spec, live) == cm.total(spec) - \
        12 * atoms[(1, 5)] - 24 * atoms[(3, 7)]


# ---------------------------------------------------------------- latency
def hand_table(spec=TINY_SPEC, input_size=(16, 16), batch=1, step=8):
    """A latency table made by hand: each kernel's curve k/10 ms per atom
    plus 0.5 ms, measured at 1 and every ``step`` atoms; shared part 0.3,
    identity 0.01, fixed 2.0."""
    spec = load_spec(spec)
    blocks = []
    for b in spec.blocks:
        kernels = {}
        for k, n in b.kernels.items():
            atoms = sorted({1, *range(step, n + 1, step), n})
            kernels[k] = KernelCurve(atoms, [0.5 + a * k / 10 for a in atoms])
        blocks.append(BlockTable(kernels, 0.3,
                                 0.01 if b.has_residual else 0.0))
    meta = dict(device='cpu', device_name='hand', threads=2, batch=batch,
                input_size=list(input_size), num_classes=10, step=step,
                runtime='torch', memory_format='channels_last')
    return LatencyTable(spec, 2.0, blocks, meta)


def test_interpolation_and_block_model():
    table = hand_table()
    # Grid points and between them: exact for a linear curve.
    assert table.blocks[1].kernels[5](16) == pytest.approx(0.5 + 8.0)
    assert table.blocks[1].kernels[5](11) == pytest.approx(0.5 + 5.5)
    # Two kernels: the shared 0.3 counted once.
    assert table.block_ms(1, {3: 8, 5: 4}) == pytest.approx(
        (0.5 + 2.4) + (0.5 + 2.0) - 0.3)
    assert table.block_ms(1, {}) == 0.01
    spec = load_spec(TINY_SPEC)
    assert table.predict(spec) == pytest.approx(
        2.0 + sum(table.block_ms(i, b.kernels)
                  for i, b in enumerate(spec.blocks)))


def test_curves_are_made_non_decreasing():
    curve = KernelCurve([1, 8, 16, 24], [1.0, 2.0, 1.5, 3.0])
    assert curve.ms == [1.0, 2.0, 2.0, 3.0]
    assert curve(12) == pytest.approx(2.0)


def test_json_round_trip(tmp_path):
    table = hand_table()
    path = str(tmp_path / 'lut.json')
    table.dump(path)
    loaded = LatencyTable.load(path)
    assert loaded.meta['input_size'] == [16, 16]
    assert loaded.supernet == table.supernet
    spec = load_spec(TINY_SPEC)
    spec.blocks[3].kernels = {5: 13}
    assert loaded.predict(spec) == pytest.approx(table.predict(spec))
    assert loaded.to_dict() == json.loads(open(path).read())


def test_latency_cost_model(tmp_path):
    path = str(tmp_path / 'lut.json')
    hand_table().dump(path)
    cm = build_cost_model('latency', 16, 10, lut=path)
    spec = load_spec(TINY_SPEC)
    assert cm.unit == 'ms' and cm.total(spec) == pytest.approx(
        LatencyTable.load(path).predict(spec))
    # An atom costs its curve's slope (secant over one grid step).
    assert cm.atom_costs(spec)[(3, 7)] == pytest.approx(0.7)
    # The fixed parts: stem/first/head plus what identity blocks cost.
    assert cm.fixed(spec) == pytest.approx(2.0 + 0.01 + 0.01)
    assert cm.minimum(spec, 8) == pytest.approx(
        cm.fixed(spec) + 2 * (0.5 + 8 * 0.3))


@pytest.mark.parametrize('kwargs, match', [
    (dict(cost='flops'), "penalty.cost: 'flops' is not one of"),
    (dict(cost='latency'), 'needs penalty.lut=PATH'),
    (dict(cost='macs', lut='x.json'), "only read with penalty.cost='latency'"),
    (dict(cost='latency', lut='missing.json'), 'no such latency table'),
])
def test_bad_cost_options(kwargs, match):
    with pytest.raises(CostModelError, match=match):
        build_cost_model(input_size=16, **kwargs)


def test_table_of_other_conditions_is_refused(tmp_path):
    path = str(tmp_path / 'lut.json')
    hand_table(input_size=(32, 32)).dump(path)
    with pytest.raises(CostModelError, match=r'measured at input 32x32 but '
                       r'penalty.input_size is 16x16.*--input-size 16 16'):
        build_cost_model('latency', 16, lut=path)
    hand_table(batch=8).dump(path)
    with pytest.raises(CostModelError, match='measured at batch 8 but '
                       'penalty.batch is 1'):
        build_cost_model('latency', 16, lut=path)
    other = copy.deepcopy(TINY_SPEC)
    other['blocks'][1]['kernels']['5'] = 32  # more atoms than measured
    with pytest.raises(CostModelError, match=r'blocks\[1\].kernels.5'):
        hand_table().predict(other)
    bad = hand_table().to_dict()
    del bad['blocks'][2]['kernels']['5']
    with pytest.raises(CostModelError, match=r'blocks\[2\].kernels.5'):
        LatencyTable.from_dict(bad)


# ---------------------------------------------------------------- divisor
def test_round_spec_and_check():
    spec = load_spec('atomnas_c')
    assert first_not_divisible(spec, 8) == 'blocks[0].kernels.3 has 15 atoms'
    rounded = round_spec(spec, 8, cap='supernet')
    assert first_not_divisible(rounded, 8) is None
    assert rounded.blocks[0].kernels == {3: 16, 5: 24, 7: 16}
    assert rounded.blocks[1].kernels == {3: 24, 5: 8, 7: 8}
    assert count(rounded).macs > count(spec).macs
    assert round_spec(rounded, 8) == rounded
    with pytest.raises(SpecError, match=r'blocks\[0\].kernels.3: rounding '
                       '15 up to 16 exceeds'):
        round_spec(spec, 8, cap=round_spec(spec, 1))
    with pytest.raises(ValueError, match='channel_divisor'):
        round_spec(spec, 0)
