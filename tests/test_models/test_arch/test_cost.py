import pytest

from atomnas_mm.models.arch import build_cost_model, count, load_spec

PAPER = {
    'supernet': (1_521_035_776, 11_109_768),
    'supernet_stem16': (1_510_599_168, 11_108_936),
    'atomnas_a': (258_293_281, 3_853_848),
    'atomnas_b': (326_051_363, 4_416_091),
    'atomnas_c': (359_864_205, 4_741_256),
}


@pytest.mark.parametrize('name', sorted(PAPER))
def test_exact_counts(name):
    report = count(name)
    assert (report.macs, report.params) == PAPER[name]
    assert report.params_with_bn > report.params


def test_plus_variants_match_published_rounding():
    # A+ 260M / 4.7M, B+ 329M / 5.5M, C+ 363M / 5.9M (Swish, SE 0.5).
    for name, (macs, params) in {'atomnas_a': (260, 4.7),
                                 'atomnas_b': (329, 5.5),
                                 'atomnas_c': (363, 5.9)}.items():
        spec = load_spec(name)
        spec.se_ratio, spec.activation = 0.5, 'swish'
        r = count(spec)
        assert round(r.macs / 1e6) == macs and round(r.params / 1e6, 1) == params


def test_mobilenet_v2_convention_check():
    # The paper's convention counts MobileNetV2 1.0 at 300.84M MACs (its
    # published figure, 300M). Its blocks are atomic
    # blocks with one kernel (3) and t * Cin atoms.
    stages = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
              (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    blocks, cin = [], 16
    for t, c, n, s in stages[1:]:
        for i in range(n):
            blocks.append(dict(in_channels=cin, out_channels=c,
                               stride=s if i == 0 else 1,
                               kernels={'3': t * cin}))
            cin = c
    spec = dict(stem_channels=32, first_block=dict(out_channels=16),
                blocks=blocks, head_channels=1280)
    assert round(count(spec).macs / 1e4) / 100 == 300.84


def test_atom_cost_definition():
    costs = build_cost_model('macs').atom_costs('supernet')
    # First searchable block: 16 -> 24, stride 2, 112 -> 56.
    assert costs[(0, 3)] == 16 * 112 * 112 + 9 * 56 * 56 + 24 * 56 * 56
    assert costs[(0, 7)] - costs[(0, 3)] == (49 - 9) * 56 * 56
    # The supernet's blocks' atom costs add up to the blocks' MACs.
    spec = load_spec('supernet')
    report = count(spec)
    for b, c in zip(spec.blocks, report.blocks):
        assert sum(n * c.atom_macs[k] for k, n in b.kernels.items()) == c.macs


def test_non_square_input_and_backbone_only():
    r = count('atomnas_c', (320, 256), num_classes=0)
    assert r.blocks[-1].out_hw == (10, 8)
    assert r.macs < count('atomnas_c', (320, 256)).macs
