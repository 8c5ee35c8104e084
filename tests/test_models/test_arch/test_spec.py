import copy
import json

import pytest

from atomnas_mm.models.arch import ArchSpec, SpecError, load_spec, shipped_specs


def test_shipped_specs_load():
    assert set(shipped_specs()) >= {'supernet', 'supernet_stem16',
                                    'atomnas_a', 'atomnas_b', 'atomnas_c',
                                    'tiny'}
    sn = load_spec('supernet')
    assert sn.stem_channels == 32 and load_spec('supernet_stem16'
                                                ).stem_channels == 16
    assert len(sn.blocks) == 21 and sn.num_atoms == 31392
    assert sn.head_channels == 1280 and sn.activation == 'relu'
    assert load_spec('atomnas_a').stem_channels == 16
    # The tests' and the benchmarks' smoke-test supernet: 4 blocks, 2 stages.
    tiny = load_spec('tiny')
    assert tiny.stem_channels == 8 and tiny.head_channels == 64
    assert len(tiny.blocks) == 4 and tiny.num_atoms == 204
    assert tiny.stage_ends() == [1, 3]


def test_residual_follows_from_spec():
    sn = load_spec('supernet')
    res = [b.has_residual for b in sn.blocks]
    # A stage's first block never has one (incl. 80->96 and 192->320).
    firsts = [0, 4, 8, 12, 16, 20]
    assert [i for i, r in enumerate(res) if not r] == firsts
    assert not sn.first_has_residual and \
        load_spec('supernet_stem16').first_has_residual


def test_published_zero_kernel_is_dropped():
    # AtomNAS-A block 5 (index 3): k3:14 k5:1 k7:0.
    assert load_spec('atomnas_a').blocks[3].kernels == {3: 14, 5: 1}


def test_json_round_trip(tmp_path):
    spec = load_spec('atomnas_c')
    path = tmp_path / 'c.json'
    spec.dump(str(path))
    assert load_spec(str(path)) == spec
    assert json.loads(path.read_text())['blocks'][0]['kernels'] == {
        '3': 15, '5': 23, '7': 13}


def test_inline_dict_and_spec_objects(tiny_spec):
    spec = load_spec(tiny_spec)
    assert load_spec(spec) == spec and load_spec(spec.to_dict()) == spec


def _bad(tiny_spec, mutate):
    data = copy.deepcopy(tiny_spec)
    mutate(data)
    with pytest.raises(SpecError) as err:
        ArchSpec.from_dict(data)
    msg = str(err.value)
    assert '\n' not in msg
    return msg


def test_unknown_key(tiny_spec):
    msg = _bad(tiny_spec, lambda d: d['blocks'][1].update(expand=6))
    assert 'blocks[1]' in msg and "'expand'" in msg
    msg = _bad(tiny_spec, lambda d: d.update(width_mult=1.0))
    assert "'width_mult'" in msg


def test_kernel_without_channel_count(tiny_spec):
    msg = _bad(tiny_spec, lambda d: d['blocks'][2]['kernels'].update({'5': None}))
    assert 'blocks[2].kernels.5' in msg and 'no channel count' in msg


@pytest.mark.parametrize('k', ['4', '0', '-3'])
def test_even_or_non_positive_kernel(tiny_spec, k):
    msg = _bad(tiny_spec, lambda d: d['blocks'][0]['kernels'].update({k: 3}))
    assert 'blocks[0].kernels' in msg and 'odd and positive' in msg


def test_bad_stride(tiny_spec):
    msg = _bad(tiny_spec, lambda d: d['blocks'][3].update(stride=3))
    assert 'blocks[3].stride' in msg


def test_negative_channels(tiny_spec):
    msg = _bad(tiny_spec, lambda d: d['blocks'][1]['kernels'].update({'3': -2}))
    assert 'blocks[1].kernels.3' in msg
    msg = _bad(tiny_spec, lambda d: d['blocks'][1].update(out_channels=-16))
    assert 'blocks[1].out_channels' in msg


def test_block_without_atoms_needs_residual(tiny_spec):
    # Stride 2: cannot become the identity.
    msg = _bad(tiny_spec, lambda d: d['blocks'][2].update(kernels={}))
    assert 'blocks[2].kernels' in msg and 'no atoms and no residual' in msg
    # With a residual it is the identity, and that is valid.
    data = copy.deepcopy(tiny_spec)
    data['blocks'][1]['kernels'] = {'3': 0, '5': 0}
    assert ArchSpec.from_dict(data).blocks[1].is_identity


def test_channels_must_chain(tiny_spec):
    msg = _bad(tiny_spec, lambda d: d['blocks'][2].update(in_channels=20))
    assert 'blocks[2].in_channels' in msg


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"stem_channels": 16,')
    with pytest.raises(SpecError, match='bad.json: not valid JSON'):
        load_spec(str(bad))
    with pytest.raises(SpecError, match='no shipped spec'):
        load_spec('atomnas_z')


@pytest.mark.parametrize('stride', [2.0, 1.0, True, '2'])
def test_stride_must_be_an_int(tiny_spec, stride):
    # 2.0 == 2 in Python: it passed, counted float MACs and built a net that
    # failed at forward.
    msg = _bad(tiny_spec, lambda d: d['blocks'][2].update(stride=stride))
    assert 'blocks[2].stride' in msg and 'must be 1 or 2' in msg


@pytest.mark.parametrize('key', ['3.0', 3.5, True, 'k3'])
def test_kernel_key_must_be_an_integer(tiny_spec, key):
    msg = _bad(tiny_spec, lambda d: d['blocks'][0]['kernels'].update(
        {key: 4}))
    assert 'blocks[0].kernels' in msg and 'not an integer' in msg


@pytest.mark.parametrize('se', [float('nan'), float('inf'), -0.5, '0.5'])
def test_se_ratio_must_be_finite(tiny_spec, se):
    msg = _bad(tiny_spec, lambda d: d.update(se_ratio=se))
    assert 'spec.se_ratio' in msg


def test_binary_file_is_refused_in_one_line(tmp_path):
    bad = tmp_path / 'spec.json'
    bad.write_bytes(bytes(range(256)))
    with pytest.raises(SpecError, match='spec.json: not a UTF-8 text file'):
        load_spec(str(bad))
