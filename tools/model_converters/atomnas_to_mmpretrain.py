"""Convert a checkpoint of the authors' AtomNAS code (github.com/meijieru/
AtomNAS, e.g. their published AtomNAS-C) into an mmpretrain checkpoint.

    python tools/model_converters/atomnas_to_mmpretrain.py SRC DST [--no-ema] [--act relu|swish]

SRC is their ``NAME.pt``; ``NAME.yml`` beside it, when present, gives the
structure (else it is read from the weights' shapes and the strides from
the paper's supernet, and the output says so). SRC is read without running
any code from it. DST holds ``state_dict`` (``backbone.*``, ``head.fc.*``)
and ``meta['atomnas_spec']``, so ``AtomNASNet(arch=DST)``, ``init_cfg=dict(
type='Pretrained', checkpoint=DST, prefix='backbone.')`` and ``tools/test.py
CONFIG DST`` build the net from it. The EMA weights are converted (the
authors evaluate those) unless ``--no-ema``.
"""
import argparse
import os.path as osp
import sys
from typing import Optional, Sequence

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from atomnas_mm.models.converters import (ConversionError,  # noqa: E402
                                          convert_authors_checkpoint,
                                          save_converted, summary)


def main(argv: Optional[Sequence[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help="the authors' checkpoint (NAME.pt)")
    parser.add_argument('dst', help='the mmpretrain checkpoint to write')
    parser.add_argument('--no-ema', action='store_true',
                        help="convert the raw weights ('model') instead of "
                        'the EMA ones')
    parser.add_argument('--act', choices=('relu', 'swish'),
                        help='the activation, when there is no NAME.yml '
                        '(default: swish if the net has SE, else relu)')
    args = parser.parse_args(argv)
    try:
        converted = convert_authors_checkpoint(args.src, not args.no_ema,
                                               args.act)
        for note in converted.notes:
            print(f'[convert] {note}')
        save_converted(converted, args.dst)
    except ConversionError as e:
        sys.exit(f'error: {e}')
    except OSError as e:
        sys.exit(f'error: {args.dst}: cannot be written ({e.strerror}); '
                 'choose another path')
    print(f'[convert] wrote {args.dst}: {summary(converted)}; the authors '
          "train with BN eps 1e-3 (our ImageNet configs' norm_cfg)")
    return args.dst


if __name__ == '__main__':
    main()
