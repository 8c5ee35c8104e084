"""Which checkpoint of a work dir a run can resume from."""
from __future__ import annotations

import glob
import os.path as osp
import re
from typing import List, Optional, Tuple

from ..models.checkpoint import CheckpointError, load_checkpoint_file

_STEP = re.compile(r'(?:epoch|iter)_(\d+)\.pth$')


def _candidates(work_dir: str) -> List[str]:
    """Checkpoints of ``work_dir``: the one ``last_checkpoint`` names first,
    then every ``epoch_N.pth`` / ``iter_N.pth``, newest first."""
    found = []
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        if named:
            found.append(named if osp.isfile(named) else
                         osp.join(work_dir, osp.basename(named)))
    numbered = [p for p in glob.glob(osp.join(work_dir, '*.pth'))
                if _STEP.search(p)]
    numbered.sort(key=lambda p: (osp.getmtime(p), int(_STEP.search(p)[1])),
                  reverse=True)
    for p in numbered:
        if p not in found:
            found.append(p)
    return found


def latest_intact_checkpoint(work_dir: str) -> Tuple[Optional[str],
                                                     List[str]]:
    """The newest checkpoint of ``work_dir`` that loads and can be resumed
    (it has ``meta.epoch`` and ``meta.iter``), and one line per newer file
    that could not be used.

    Returns:
        (path or None, reasons for the files skipped).
    """
    skipped = []
    for path in _candidates(work_dir):
        try:
            ckpt = load_checkpoint_file(path)
        except CheckpointError as e:
            skipped.append(str(e))
            continue
        meta = ckpt.get('meta')
        if not isinstance(meta, dict) or 'epoch' not in meta or \
                'iter' not in meta:
            skipped.append(f'{path}: not a training checkpoint (no '
                           'meta.epoch / meta.iter)')
            continue
        return path, skipped
    return None, skipped
