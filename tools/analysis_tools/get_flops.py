"""Count MACs ("FLOPs" in the paper) and params of an AtomNAS net.

    python tools/analysis_tools/get_flops.py atomnas_c
    python tools/analysis_tools/get_flops.py path/to/spec.json --shape 320 256
    python tools/analysis_tools/get_flops.py configs/atomnas/atomnas_demo_digits.py
    python tools/analysis_tools/get_flops.py work_dirs/x/deploy.pth
    python tools/analysis_tools/get_flops.py atomnas_a --json

The net is anything the backbone's ``arch`` takes: a shipped name, a spec
file, a search checkpoint, or a config. A config is counted at its own
input size (its test pipeline's crop or resize) unless ``--shape`` is given;
everything else at 224x224. The count is arithmetic on the spec (batch 1,
the paper's convention: conv and linear MACs, global pool, SE multiply; BN
and activations free; params of conv and linear layers, plus the total with
BN). ``--check`` also builds the net and counts it with
``mmengine.analysis``.
"""
import argparse
import json
import sys

from atomnas_mm.models.arch import SpecError, count
from atomnas_mm.models.resolve import resolve_arch


def main(argv=None):
    parser = argparse.ArgumentParser(description='Count MACs and params')
    parser.add_argument('arch', help='shipped spec name, spec JSON, search '
                        'checkpoint or config')
    parser.add_argument('--shape', type=int, nargs='+', default=None,
                        metavar='N', help='input size: H W, or one side '
                        '(default: a config\'s own, else 224)')
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
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error('--shape takes H W or one side')

    try:
        resolved = resolve_arch(args.arch)
    except SpecError as e:
        sys.exit(f'error: {e}')
    spec = resolved.spec
    if args.shape is not None:
        shape, where = tuple(args.shape) * (3 - len(args.shape)), '--shape'
    elif resolved.input_size is not None:
        shape, where = resolved.input_size, resolved.input_size_from
    else:
        shape, where = (224, 224), 'default'
    num_classes = args.num_classes if args.num_classes is not None else \
        resolved.num_classes if resolved.num_classes is not None else 1000
    report = count(spec, shape, num_classes)

    if args.json:
        print(json.dumps(report.as_dict()))
        return
    print(f'arch:    {args.arch}  ({spec.num_atoms:,} atoms, '
          f'{num_classes} classes)')
    print(f'input:   {shape[0]}x{shape[1]}  ({where})')
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
