"""tools/dataset_converters/digits_to_folder.py: the demo's split, and the
harder variants of benchmarks/ablations.py compared with it."""
import json
import os
import os.path as osp
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
from digits_to_folder import convert  # noqa: E402


def _files(root, split):
    """file name -> class folder it was filed under."""
    out = {}
    for c in os.listdir(osp.join(root, split)):
        for f in os.listdir(osp.join(root, split, c)):
            out[f] = int(c)
    return out


def test_harder_variant_keeps_the_demo_validation_and_files_wrong_labels(
        tmp_path):
    from sklearn.datasets import load_digits
    truth = load_digits().target
    plain, hard = str(tmp_path / 'plain'), str(tmp_path / 'hard')
    assert convert(plain) == dict(train=1438, val=359)
    assert convert(hard, 0, per_class=30, label_noise=0.2) == \
        dict(train=300, val=359)
    # Validation: the same images under their true classes.
    assert _files(hard, 'val') == _files(plain, 'val')
    assert all(truth[int(f[:4])] == c
               for f, c in _files(hard, 'val').items())
    # Training: 30 per true class, a subset of the demo's training images;
    # the wrong labels are the stamp's count, each a different class.
    train = _files(hard, 'train')
    assert set(train) <= set(_files(plain, 'train'))
    per_class = [sum(truth[int(f[:4])] == c for f in train) for c in range(10)]
    assert per_class == [30] * 10
    wrong = sum(truth[int(f[:4])] != c for f, c in train.items())
    stamp = json.load(open(osp.join(hard, 'digits.json')))
    assert wrong == stamp['noisy_train_labels']
    assert 30 <= wrong <= 90  # 20% of 300, give or take the draw


def test_other_options_rewrite_the_tree(tmp_path):
    root = str(tmp_path / 'd')
    convert(root, 0, per_class=30, label_noise=0.2)
    first = _files(root, 'train')
    assert convert(root, 0, per_class=30, label_noise=0.2)['train'] == 300
    assert _files(root, 'train') == first  # same options: kept as is
    assert convert(root)['train'] == 1438  # no stale subset left behind
    assert len(_files(root, 'train')) == 1438


def test_bad_noise_is_refused(tmp_path):
    with pytest.raises(ValueError, match='label_noise'):
        convert(str(tmp_path / 'x'), label_noise=1.0)
