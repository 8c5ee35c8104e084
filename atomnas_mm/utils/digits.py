"""scikit-learn's handwritten digits as a class-folder image tree, the data
of the demo, its tests and the benchmarks that train on it.

``tools/dataset_converters/digits_to_folder.py`` is the command line.
"""
import json
import os
import os.path as osp
from typing import Dict, Optional

import numpy as np
from PIL import Image

DEFAULT_OUT = 'data/digits'
VAL_FRACTION = 0.2


def _count_pngs(root: str) -> int:
    return sum(f.endswith('.png') for _, _, files in os.walk(root)
               for f in files)


def convert(out_dir: str = DEFAULT_OUT, seed: int = 0,
            per_class: Optional[int] = None,
            label_noise: float = 0.0) -> Dict[str, int]:
    """Write the tree (nothing when it is complete already, for the same
    options); return the number of images per split.

    The 1,797 8x8 images become PNGs under ``out_dir/{train,val}/<digit>/``,
    a stratified 80/20 split with a fixed seed, readable by mmpretrain's
    ``CustomDataset``.

    Args:
        out_dir: Where the tree goes.
        seed: Seed of the split (and of the subset and the noise).
        per_class: Training images kept per class (None: all).
        label_noise: Probability that a training image is filed under a
            uniformly drawn wrong class (validation images stay clean).

    Returns:
        ``{'train': n, 'val': n}``.
    """
    from sklearn.datasets import load_digits
    if not 0.0 <= label_noise < 1.0:
        raise ValueError(f'label_noise must be in [0, 1), got {label_noise}')
    options = dict(seed=seed, per_class=per_class, label_noise=label_noise)
    stamp = osp.join(out_dir, 'digits.json')
    if osp.isfile(stamp):
        with open(stamp) as f:
            done = json.load(f)
        if done.get('options') == options:
            return done['counts']
    elif osp.isdir(out_dir) and not per_class and not label_noise and \
            _count_pngs(out_dir) == 1797:
        # A tree written before the stamp existed.
        return {s: _count_pngs(osp.join(out_dir, s)) for s in ('train', 'val')}

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    labels = digits.target
    total = len(labels)
    rng = np.random.default_rng(seed)
    split = np.empty(total, dtype=object)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(len(idx) * VAL_FRACTION))
        split[idx[:n_val]] = 'val'
        split[idx[n_val:]] = 'train'
        if per_class is not None:
            split[idx[n_val + per_class:]] = None  # left out
    filed = labels.copy()
    noisy = (split == 'train') & (rng.random(total) < label_noise)
    shift = rng.integers(1, 10, total)  # any other class, uniformly
    filed[noisy] = (labels[noisy] + shift[noisy]) % 10
    if osp.isdir(out_dir):
        import shutil
        for part in ('train', 'val'):
            shutil.rmtree(osp.join(out_dir, part), ignore_errors=True)
    for i, (img, label, part) in enumerate(zip(images, filed, split)):
        if part is None:
            continue
        d = osp.join(out_dir, part, str(label))
        os.makedirs(d, exist_ok=True)
        Image.fromarray(img, mode='L').save(osp.join(d, f'{i:04d}.png'))
    counts = {s: int((split == s).sum()) for s in ('train', 'val')}
    with open(stamp, 'w') as f:
        json.dump(dict(options=options, counts=counts,
                       noisy_train_labels=int(noisy.sum())), f)
    return counts
