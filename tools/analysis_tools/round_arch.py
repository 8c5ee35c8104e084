"""Round every kernel's atom count of a net up to a multiple of a divisor.

    python tools/analysis_tools/round_arch.py atomnas_c --divisor 8
    python tools/analysis_tools/round_arch.py work_dirs/x/deploy.pth --divisor 8 --out c8.json
    python tools/analysis_tools/round_arch.py atomnas_a --divisor 16 --per-block --supernet supernet_stem16

Hardware-friendly widths after the fact: a count of 0 stays 0, any other
count rounds up (a searched net only grows, by a few percent of MACs; on
CPUs and in onnxruntime such widths run much faster per MAC). The net is
anything the backbone's ``arch`` takes (a shipped name, a spec file, a
search checkpoint, a config), read through the one resolver. Prints MACs
and params before and after (per block with ``--per-block``), counted at a
config's own input size unless ``--shape`` is given, else 224x224.
``--supernet`` refuses a rounding that exceeds the supernet's counts (a
search from it could not give that net). ``--out`` writes the rounded spec.
"""
import argparse
import sys

from atomnas_mm.models.arch import SpecError, count, round_spec
from atomnas_mm.models.resolve import resolve_arch, resolve_spec


def _kernels(block) -> str:
    return ' '.join(f'k{k}:{n}' for k, n in block.kernels.items()) or '-'


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Round atom counts up to a multiple of a divisor')
    parser.add_argument('arch', help='shipped spec name, spec JSON, search '
                        'checkpoint or config')
    parser.add_argument('--divisor', type=int, required=True,
                        help='channel divisor (e.g. 8 or 16)')
    parser.add_argument('--out', help='write the rounded spec (JSON) here')
    parser.add_argument('--supernet', help='refuse counts above this '
                        'supernet\'s (name, spec, checkpoint or config)')
    parser.add_argument('--shape', type=int, nargs='+', default=None,
                        metavar='N', help='input size: H W, or one side '
                        '(default: a config\'s own, else 224)')
    parser.add_argument('--num-classes', type=int, default=None,
                        help='classifier width (default: the config\'s, or '
                        '1000)')
    parser.add_argument('--per-block', action='store_true',
                        help='list every block before and after')
    args = parser.parse_args(argv)
    if args.divisor < 1:
        parser.error('--divisor must be >= 1')
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error('--shape takes H W or one side')

    try:
        resolved = resolve_arch(args.arch)
        cap = resolve_spec(args.supernet) if args.supernet else None
        rounded = round_spec(resolved.spec, args.divisor, cap=cap)
    except SpecError as e:
        sys.exit(f'error: {e}')
    spec = resolved.spec
    if args.shape is not None:
        shape = tuple(args.shape) * (3 - len(args.shape))
    else:
        shape = resolved.input_size or (224, 224)
    classes = args.num_classes if args.num_classes is not None else \
        resolved.num_classes if resolved.num_classes is not None else 1000
    before, after = count(spec, shape, classes), count(rounded, shape,
                                                        classes)
    print(f'arch:    {args.arch}  (divisor {args.divisor}, input '
          f'{shape[0]}x{shape[1]}, {classes} classes)')
    if args.per_block:
        print(f'{"block":>5} {"in->out":>9} {"s":>2} {"kernels":<22} '
              f'{"rounded":<22} {"MACs":>12} {"rounded":>12}')
        for i, (a, b) in enumerate(zip(spec.blocks, rounded.blocks)):
            print(f'{i:>5} {a.in_channels:>4}->{a.out_channels:<4} '
                  f'{a.stride:>2} {_kernels(a):<22} {_kernels(b):<22} '
                  f'{before.blocks[i].macs:>12,} {after.blocks[i].macs:>12,}')
    for what, x, y in (('MACs', before.macs, after.macs),
                       ('params', before.params, after.params)):
        print(f'{what + ":":<8} {x:,} -> {y:,}  ({x / 1e6:.1f}M -> '
              f'{y / 1e6:.1f}M, {100 * (y - x) / x:+.2f}%)')
    print(f'atoms:   {spec.num_atoms:,} -> {rounded.num_atoms:,}')
    if args.out:
        rounded.dump(args.out)
        print(f'written: {args.out}')
    return rounded


if __name__ == '__main__':
    main()
