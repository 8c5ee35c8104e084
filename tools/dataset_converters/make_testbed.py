"""Generate (or find cached) the test bed of the ablations: 32 classes,
each the conjunction of two small key motifs among distractors, rendered
by :mod:`atomnas_mm.datasets.testbed_images`.

    python tools/dataset_converters/make_testbed.py [OUT_DIR]
        [--seed K] [--train N] [--val N] [--size S] [--force]
"""
import argparse
from typing import Dict, Optional

from atomnas_mm.datasets.testbed_images import CLASSES, DEFAULT_OUT, generate


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('out_dir', nargs='?', default=DEFAULT_OUT)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--train', type=int, default=50000)
    p.add_argument('--val', type=int, default=10000)
    p.add_argument('--size', type=int, default=32)
    p.add_argument('--force', action='store_true',
                   help='render again even if the set is cached')
    return p.parse_args(argv)


def main(argv: Optional[list] = None) -> Dict:
    args = parse_args(argv)
    info = generate(args.out_dir, args.seed, args.train, args.val,
                    args.size, args.force)
    how = 'cached' if info['cached'] else f'rendered in {info["seconds"]} s'
    print(f'{info["dir"]}: {info["counts"]["train"]} train + '
          f'{info["counts"]["val"]} val images, {len(CLASSES)} classes '
          f'({how})')
    return info


if __name__ == '__main__':
    main()
