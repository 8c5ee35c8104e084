"""tools/dataset_converters/make_testbed.py and the data set that reads it:
deterministic, balanced, cached, and usable through an mmpretrain pipeline.
Tiny sets only (a few hundred 32x32 images)."""
import json
import os
import os.path as osp
import sys

import numpy as np
import pytest

from tests.conftest import ROOT

from atomnas_mm.datasets import testbed_images as make_testbed

sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
import make_testbed as make_testbed_tool  # noqa: E402

SMALL = dict(num_train=320, num_val=160, size=32)


def _arrays(info):
    return {f'{s}_{k}': np.load(osp.join(info['dir'], f'{s}_{k}.npy'))
            for s in make_testbed.SPLITS for k in ('images', 'labels')}


@pytest.fixture(scope='module')
def made(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('testbed'))
    return root, make_testbed.generate(root, seed=0, **SMALL)


def test_sizes_dtypes_and_meta(made):
    _, info = made
    arrays = _arrays(info)
    assert arrays['train_images'].shape == (320, 32, 32, 3)
    assert arrays['val_images'].shape == (160, 32, 32, 3)
    assert arrays['train_images'].dtype == np.uint8
    assert arrays['train_labels'].dtype == np.int64
    assert arrays['val_labels'].shape == (160, )
    assert info['classes'] == list(make_testbed.CLASSES)
    assert info['keys'] == make_testbed.make_bank(0)['keys'].tolist()
    bank = np.load(osp.join(info['dir'], 'bank.npy'))
    np.testing.assert_array_equal(bank, make_testbed.make_bank(0)[
        'templates'])
    assert info['counts'] == dict(train=320, val=160)
    assert not info['cached']
    # Plain .npy, not compressed: memory-mappable.
    mm = np.load(osp.join(info['dir'], 'train_images.npy'), mmap_mode='r')
    assert isinstance(mm, np.memmap)
    # The images are not blank or constant.
    assert arrays['train_images'].std() > 20


def test_labels_balanced(made):
    _, info = made
    for split in make_testbed.SPLITS:
        labels = np.load(osp.join(info['dir'], f'{split}_labels.npy'))
        counts = np.bincount(labels, minlength=len(make_testbed.CLASSES))
        assert counts.max() - counts.min() <= 1, (split, counts)


def test_deterministic_for_a_seed(made, tmp_path):
    _, info = made
    again = make_testbed.generate(str(tmp_path), seed=0, **SMALL)
    other = make_testbed.generate(str(tmp_path), seed=1, **SMALL)
    a, b, c = _arrays(info), _arrays(again), _arrays(other)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a['train_images'], c['train_images'])
    assert not np.array_equal(a['train_labels'], c['train_labels'])
    # Train and validation are different draws.
    assert not np.array_equal(a['train_images'][:160], a['val_images'])


def test_cache_is_reused_and_keyed(made):
    root, info = made
    path = osp.join(info['dir'], 'train_images.npy')
    mtime = os.stat(path).st_mtime_ns
    again = make_testbed.generate(root, seed=0, **SMALL)
    assert again['cached'] and again['dir'] == info['dir']
    assert os.stat(path).st_mtime_ns == mtime  # not written again
    # The key holds the version and every option.
    assert f'v{make_testbed.VERSION}_' in osp.basename(info['dir'])
    assert make_testbed.cache_dir(root, 0, 320, 161, 32) != info['dir']
    with open(osp.join(info['dir'], 'meta.json')) as f:
        assert json.load(f)['options']['version'] == make_testbed.VERSION


def test_cli_reports_cached(made, capsys):
    root, _ = made
    make_testbed_tool.main([root, '--train', '320', '--val', '160'])
    assert '(cached)' in capsys.readouterr().out


def test_bank_keys_are_distinct_motifs():
    bank = make_testbed.make_bank(0)
    t, sizes, keys = bank['templates'], bank['sizes'], bank['keys']
    assert t.shape == (make_testbed.NUM_MOTIFS, 9, 9)
    assert keys.shape == (make_testbed.NUM_CLASSES,
                          make_testbed.KEYS_PER_CLASS)
    # Every motif is the key of one class or neutral, never both.
    owned = np.concatenate([keys.ravel(), bank['neutral']])
    assert sorted(owned) == list(range(make_testbed.NUM_MOTIFS))
    # All four sizes, equally often; nothing outside a template's corner.
    assert np.bincount(sizes)[list(make_testbed.MOTIF_SIZES)].tolist() == \
        [make_testbed.NUM_MOTIFS // 4] * 4
    for m, s in enumerate(sizes):
        assert not t[m, s:].any() and not t[m, :, s:].any()
        assert (t[m, :s, :s] == 1).any() and (t[m, :s, :s] == 2).any()
    # Motifs of one size differ, also with their two levels swapped (the
    # colours are random, so a swap looks the same).
    for s in make_testbed.MOTIF_SIZES:
        same = [t[m, :s, :s] for m in np.flatnonzero(sizes == s)]
        for i in range(len(same)):
            for j in range(i):
                assert make_testbed._distance(same[i], same[j]) >= \
                    max(3, s * s // 4)
    # Deterministic from the seed, another seed another bank.
    again, other = make_testbed.make_bank(0), make_testbed.make_bank(1)
    np.testing.assert_array_equal(t, again['templates'])
    np.testing.assert_array_equal(keys, again['keys'])
    assert not np.array_equal(t, other['templates'])


def test_layout_holds_the_conjunction_of_the_keys():
    """Each image shows both keys of its class, and no other class has
    both of its keys in it: a single key is never the class."""
    bank = make_testbed.make_bank(0)
    rng = np.random.default_rng(3)
    labels = np.arange(2000) % make_testbed.NUM_CLASSES
    cells = make_testbed.layout(labels, bank, rng)
    keys = bank['keys']
    lo, hi = make_testbed.DISTRACTORS
    foreign_seen = 0
    for label, row in zip(labels, cells):
        shown = row[row >= 0]
        assert 2 + lo <= len(shown) <= 2 + hi
        present = np.isin(keys, shown).sum(1)  # keys shown, per class
        assert present[label] == 2
        assert (np.delete(present, label) <= 1).all()
        foreign_seen += np.delete(present, label).sum()
    # Foreign keys are common distractors (FOREIGN_P of them).
    mean_distractors = (lo + hi) / 2
    assert foreign_seen / len(labels) == pytest.approx(
        make_testbed.FOREIGN_P * mean_distractors, rel=0.15)


def test_render_shapes_and_layout(made):
    bank = make_testbed.make_bank(0)
    labels = np.arange(64) % make_testbed.NUM_CLASSES
    img, cells = make_testbed.render(labels, 32, np.random.default_rng(0),
                                     bank, return_layout=True)
    assert img.shape == (64, 32, 32, 3) and img.dtype == np.uint8
    assert cells.shape == (64, make_testbed.GRID ** 2)
    same = make_testbed.render(labels, 32, np.random.default_rng(0), bank)
    np.testing.assert_array_equal(img, same)


def test_bad_options_fail_in_one_line(tmp_path):
    with pytest.raises(ValueError, match='size must be >= 24'):
        make_testbed.generate(str(tmp_path), size=16)
    with pytest.raises(ValueError, match='num_train and num_val'):
        make_testbed.generate(str(tmp_path), num_train=0)


def test_dataset_loads_and_pipeline_runs(made):
    import torch
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import DATASETS

    from atomnas_mm.datasets import TestbedDataset
    root, info = made
    labels = np.load(osp.join(info['dir'], 'train_labels.npy'))
    images = np.load(osp.join(info['dir'], 'train_images.npy'))
    pipeline = [dict(type='RandomCrop', crop_size=32, padding=4),
                dict(type='RandomFlip', prob=0.5),
                dict(type='PackInputs')]
    # Built from the mmpretrain scope by the scoped name, as configs do.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(dict(type='atomnas_mm.TestbedDataset',
                                 data_root=root, split='train',
                                 pipeline=pipeline, seed=0, **SMALL))
    assert isinstance(ds, TestbedDataset)
    assert len(ds) == 320
    assert ds.CLASSES == tuple(make_testbed.CLASSES)
    np.testing.assert_array_equal(ds.get_gt_labels(), labels)
    info3 = ds.get_data_info(3)
    np.testing.assert_array_equal(info3['img'], images[3])  # RGB, as saved
    item = ds[3]
    assert item['inputs'].shape == (3, 32, 32)
    assert item['inputs'].dtype == torch.uint8
    assert int(item['data_samples'].gt_label) == labels[3]
    # indices: the first N images (how the config limits a run).
    val = TestbedDataset(data_root=root, split='val', indices=10,
                         pipeline=[dict(type='PackInputs')], **SMALL)
    assert len(val) == 10
    # Pickles without the memory map (DataLoader workers reopen it).
    import pickle
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone.get_data_info(5)['img'], images[5])


def test_dataset_generates_when_missing_or_says_how(tmp_path):
    from atomnas_mm.datasets import TestbedDataset
    root = str(tmp_path / 'fresh')
    with pytest.raises(FileNotFoundError, match='make_testbed.py'):
        TestbedDataset(data_root=root, generate=False, **SMALL)
    ds = TestbedDataset(data_root=root, split='val', **SMALL)
    assert len(ds) == 160
    assert osp.isfile(osp.join(make_testbed.cache_dir(root, 0, **SMALL),
                               'meta.json'))


def test_config_matches_the_generator():
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'atomnas',
                                   'atomnas_testbed.py'))
    n = len(make_testbed.CLASSES)
    assert cfg.model.head.num_classes == n
    assert cfg.data_preprocessor.num_classes == n
    assert cfg.data_preprocessor.to_rgb is False  # the arrays are RGB
    assert cfg.train_dataloader.dataset.type == 'atomnas_mm.TestbedDataset'
    assert cfg.train_dataloader.dataset.size == 32
