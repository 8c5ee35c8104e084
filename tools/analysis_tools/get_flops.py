"""Count MACs ("FLOPs" in the paper) and params of an AtomNAS net.

    python tools/analysis_tools/get_flops.py atomnas_c
    python tools/analysis_tools/get_flops.py path/to/spec.json --shape 320 256
    python tools/analysis_tools/get_flops.py configs/atomnas/atomnas_demo_digits.py
    python tools/analysis_tools/get_flops.py atomnas_a --json

The count is arithmetic on the spec (batch 1, the paper's convention: conv
and linear MACs, global pool, SE multiply; BN and activations free; params
of conv and linear layers, plus the total with BN). ``--check`` also builds
the net and counts it with ``mmengine.analysis``.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from atomnas_mm.models.arch import SpecError, count, load_spec  # noqa: E402


def spec_from_config(path: str):
    """The backbone spec and number of classes of a config."""
    import atomnas_mm  # noqa: F401  (atomnas_mm:: bases, registry)
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    backbone = cfg.model.get('backbone', cfg.model)
    if 'arch' not in backbone:
        raise SpecError(f'{path}: model.backbone has no "arch" (not an '
                        'AtomNASNet config?)')
    spec = load_spec(backbone.arch.to_dict()
                     if hasattr(backbone.arch, 'to_dict') else backbone.arch)
    if backbone.get('act') is not None:
        spec.activation = backbone.act
    if backbone.get('se_ratio') is not None:
        spec.se_ratio = float(backbone.se_ratio)
    head = cfg.model.get('head') or {}
    return spec, head.get('num_classes', 1000)


def main(argv=None):
    parser = argparse.ArgumentParser(description='Count MACs and params')
    parser.add_argument('arch', help='shipped spec name, spec JSON or config')
    parser.add_argument('--shape', type=int, nargs='+', default=[224],
                        metavar='N', help='input size: H W, or one side')
    parser.add_argument('--num-classes', type=int, default=None,
                        help='classifier width (default: the config\'s, or '
                        '1000); 0 counts the backbone alone')
    parser.add_argument('--json', action='store_true',
                        help='print one JSON object: macs, params, '
                        'params_with_bn')
    parser.add_argument('--per-block', action='store_true',
                        help='also list every searchable block')
    parser.add_argument('--check', action='store_true',
                        help='build the net and compare with mmengine.analysis')
    args = parser.parse_args(argv)
    if len(args.shape) not in (1, 2):
        parser.error('--shape takes H W or one side')
    shape = tuple(args.shape) * (3 - len(args.shape))

    try:
        if args.arch.endswith('.py'):
            spec, num_classes = spec_from_config(args.arch)
        else:
            spec, num_classes = load_spec(args.arch), 1000
    except SpecError as e:
        sys.exit(f'error: {e}')
    if args.num_classes is not None:
        num_classes = args.num_classes
    report = count(spec, shape, num_classes)

    if args.json:
        print(json.dumps(report.as_dict()))
        return
    print(f'arch:    {args.arch}  (input {shape[0]}x{shape[1]}, '
          f'{num_classes} classes, {spec.num_atoms:,} atoms)')
    print(f'MACs:    {report.macs:,}  ({report.macs / 1e6:.1f} M)')
    print(f'params:  {report.params:,}  ({report.params / 1e6:.2f} M, '
          'conv + linear)')
    print(f'         {report.params_with_bn:,} with BN')
    if args.per_block:
        print(f'{"block":>5} {"in->out":>9} {"s":>2} {"kernels":<24} '
              f'{"MACs":>13}')
        for i, (b, c) in enumerate(zip(spec.blocks, report.blocks)):
            ks = ' '.join(f'k{k}:{n}' for k, n in b.kernels.items()) or '-'
            print(f'{i:>5} {b.in_channels:>4}->{b.out_channels:<4} '
                  f'{b.stride:>2} {ks:<24} {c.macs:>13,}')
    if args.check:
        from atomnas_mm.utils.complexity import classifier_from_spec, measure
        macs, params, with_bn = measure(
            classifier_from_spec(spec, num_classes), shape)
        same = (macs, params, with_bn) == (report.macs, report.params,
                                           report.params_with_bn)
        print(f'mmengine.analysis on the built net: {macs:,} MACs, '
              f'{params:,} params, {with_bn:,} with BN -> '
              f'{"identical" if same else "DIFFERENT"}')
        if not same:
            sys.exit(1)


if __name__ == '__main__':
    main()
