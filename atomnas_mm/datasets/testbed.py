"""The test bed as an mmpretrain data set: memory-mapped arrays, no files
per image.

The images are made by :mod:`.testbed_images` (32 classes, each the
conjunction of two key motifs among distractors, 32x32 RGB; also
``tools/dataset_converters/make_testbed.py``). The data set generates them
itself when its cache is missing, so a config alone is enough::

    train_dataloader = dict(dataset=dict(
        type='atomnas_mm.TestbedDataset', data_root='data/testbed',
        split='train', pipeline=[dict(type='RandomCrop', crop_size=32,
                                      padding=4),
                                 dict(type='RandomFlip', prob=0.5),
                                 dict(type='PackInputs')]))

Items carry ``img`` (H, W, 3) uint8 in **RGB** order, like mmpretrain's
CIFAR data sets (so ``data_preprocessor.to_rgb=False``), and ``gt_label``;
no ``LoadImageFromFile`` is needed.
"""
from __future__ import annotations

import json
import os.path as osp
from typing import List, Optional, Sequence, Union

import numpy as np
from mmpretrain.datasets import BaseDataset

from ..registry import DATASETS
from . import testbed_images


@DATASETS.register_module()
class TestbedDataset(BaseDataset):
    """The synthetic test bed (:mod:`.testbed_images`), one split.

    Args:
        data_root: Cache root of the generator (its sets live in
            sub-folders named by version, seed and sizes).
        split: ``'train'`` or ``'val'``.
        seed: Generator seed (the task, not the training run).
        num_train: Training images of the set.
        num_val: Validation images of the set.
        size: Image side.
        generate: Render the set when it is not cached (else an error).
        **kwargs: :class:`mmpretrain.datasets.BaseDataset` arguments
            (``pipeline``, ``indices``, ``test_mode``, ...).
    """
    # Not a pytest test class, whatever its name.
    __test__ = False

    def __init__(self,
                 data_root: str = 'data/testbed',
                 split: str = 'train',
                 seed: int = 0,
                 num_train: int = 50000,
                 num_val: int = 10000,
                 size: int = 32,
                 generate: bool = True,
                 metainfo: Optional[dict] = None,
                 pipeline: Sequence = (),
                 indices: Optional[Union[int, Sequence[int]]] = None,
                 **kwargs) -> None:
        if split not in ('train', 'val'):
            raise ValueError(f"TestbedDataset: split must be 'train' or "
                             f"'val', got {split!r}")
        self.split = split
        self.options = dict(seed=seed, num_train=num_train, num_val=num_val,
                            size=size)
        self.generate = generate
        self._images: Optional[np.ndarray] = None  # opened per process
        self._set_dir: Optional[str] = None
        super().__init__(ann_file='', metainfo=metainfo, data_root=data_root,
                         pipeline=pipeline, indices=indices, **kwargs)

    # ---------------------------------------------------------------- data
    def _ensure_set(self) -> str:
        """The set's folder, rendered first when missing (and allowed)."""
        gen = testbed_images
        folder = gen.cache_dir(self.data_root, **self.options)
        if not osp.isfile(osp.join(folder, 'meta.json')):
            if not self.generate:
                raise FileNotFoundError(
                    f'{folder}/meta.json: test bed not generated; run '
                    f'tools/dataset_converters/make_testbed.py '
                    f'{self.data_root} or pass generate=True')
            gen.generate(self.data_root, **self.options)
        return folder

    def load_data_list(self) -> List[dict]:
        """One small dict per image (its row and label); the pixels stay in
        the memory-mapped array until an item is read."""
        self._set_dir = self._ensure_set()
        with open(osp.join(self._set_dir, 'meta.json')) as f:
            meta = json.load(f)
        if not self._metainfo.get('classes'):
            self._metainfo['classes'] = tuple(meta['classes'])
        labels = np.load(osp.join(self._set_dir,
                                  f'{self.split}_labels.npy'))
        return [dict(row=i, gt_label=int(label))
                for i, label in enumerate(labels)]

    @property
    def images(self) -> np.ndarray:
        """The split's (N, H, W, 3) uint8 array, memory-mapped once per
        process (a DataLoader worker opens its own)."""
        if self._images is None:
            if self._set_dir is None:
                self.full_init()
            self._images = np.load(
                osp.join(self._set_dir, f'{self.split}_images.npy'),
                mmap_mode='r')
        return self._images

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        img = np.array(self.images[info['row']])  # a writable copy
        info.update(img=img, img_shape=img.shape[:2],
                    ori_shape=img.shape[:2])
        return info

    def get_gt_labels(self) -> np.ndarray:
        """All labels, without reading any image."""
        base = super(TestbedDataset, self).get_data_info
        return np.array([base(i)['gt_label'] for i in range(len(self))],
                        dtype=np.int64)

    def __getstate__(self) -> dict:
        # A memmap would be pickled as its whole contents: workers reopen.
        state = self.__dict__.copy()
        state['_images'] = None
        return state

    def extra_repr(self) -> List[str]:
        return [f'Split: \t{self.split}',
                f'Set: \t{self._set_dir}']
