"""Re-save a checkpoint you trust so that the safe loader accepts it.

    python tools/misc/trust_checkpoint.py FILE [--out OUT]

atomnas_mm loads every checkpoint with torch's weights-only unpickler and
allows only the objects an mmengine checkpoint needs. A file written before
(or by a process without ``import atomnas_mm``) may pickle message-hub
buffers through ``builtins.getattr``, which is refused because a crafted
file can reach anything through it. This tool loads FILE with the full
unpickler -- it can run code hidden in the file, so use it only on files
you trust -- and writes it again in the safe form (to OUT, default
``<stem>.safe.pth`` beside it), then checks that OUT loads safely.
"""
import argparse
import os
import os.path as osp
import sys

import torch

from atomnas_mm.models.checkpoint import (CheckpointError,
                                          load_checkpoint_file)
from atomnas_mm.utils.seams import plain_history_buffers


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', help='a checkpoint you trust')
    parser.add_argument('--out', help='where to write the safe copy')
    args = parser.parse_args(argv)
    if not osp.isfile(args.checkpoint):
        sys.exit(f'error: {args.checkpoint}: no such file')
    out = args.out or osp.splitext(args.checkpoint)[0] + '.safe.pth'
    print(f'warning: loading {args.checkpoint} with the full unpickler '
          '(trusted files only)', file=sys.stderr)
    try:
        ckpt = torch.load(args.checkpoint, map_location='cpu',
                          weights_only=False)
    except Exception as e:  # noqa: BLE001
        sys.exit(f'error: {args.checkpoint}: cannot be loaded at all '
                 f'({type(e).__name__}: {str(e).splitlines()[0][:200]})')
    tmp = out + '.tmp'
    with plain_history_buffers():  # the form the safe loader reads
        torch.save(ckpt, tmp)
    os.replace(tmp, out)
    try:
        load_checkpoint_file(out)
    except CheckpointError as e:
        sys.exit(f'error: the copy still needs more than the safe loader '
                 f'allows: {e}')
    print(f'safe copy: {out}')
    return out


if __name__ == '__main__':
    main()
