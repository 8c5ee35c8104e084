"""Write scikit-learn's handwritten digits as a class-folder image tree.

    python tools/dataset_converters/digits_to_folder.py [OUT_DIR]

The 1,797 8x8 images (10 classes, shipped inside scikit-learn) become PNGs
under ``OUT_DIR/{train,val}/<digit>/``, a stratified 80/20 split with a
fixed seed, readable by mmpretrain's ``CustomDataset``. Does nothing when
the tree is already complete.
"""
import argparse
import os
import os.path as osp

import numpy as np
from PIL import Image

DEFAULT_OUT = 'data/digits'
VAL_FRACTION = 0.2


def _count_pngs(root: str) -> int:
    return sum(f.endswith('.png') for _, _, files in os.walk(root)
               for f in files)


def convert(out_dir: str = DEFAULT_OUT, seed: int = 0) -> dict:
    """Write the tree; return the number of images per split."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    labels = digits.target
    total = len(labels)
    if osp.isdir(out_dir) and _count_pngs(out_dir) == total:
        return {s: _count_pngs(osp.join(out_dir, s)) for s in ('train', 'val')}

    rng = np.random.default_rng(seed)
    split = np.empty(total, dtype=object)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(len(idx) * VAL_FRACTION))
        split[idx[:n_val]] = 'val'
        split[idx[n_val:]] = 'train'
    for i, (img, label, part) in enumerate(zip(images, labels, split)):
        d = osp.join(out_dir, part, str(label))
        os.makedirs(d, exist_ok=True)
        Image.fromarray(img, mode='L').save(osp.join(d, f'{i:04d}.png'))
    return {s: int((split == s).sum()) for s in ('train', 'val')}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out_dir', nargs='?', default=DEFAULT_OUT)
    args = parser.parse_args()
    counts = convert(args.out_dir)
    print(f'digits: {counts["train"]} train / {counts["val"]} val images '
          f'in {args.out_dir}')


if __name__ == '__main__':
    main()
