"""The synthetic shapes set: it loads through mmdet's CocoDataset and a real
pipeline, its annotations agree with themselves (perfect predictions score
mAP 1.0 with CocoMetric) and it is deterministic for a seed."""
import filecmp
import json
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch

from tests.conftest import ROOT

sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
import make_shapes_coco  # noqa: E402

SIZE = 64
CLASSES = make_shapes_coco.CATEGORIES


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes'))
    counts = make_shapes_coco.generate(root, num_train=8, num_val=4,
                                       size=SIZE, seed=0)
    return root, counts


def _load(root, split):
    with open(osp.join(root, 'annotations', f'instances_{split}.json')) as f:
        return json.load(f)


def _dataset(root, split):
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope
    register_all_modules(init_default_scope=False)
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='Resize', scale=(SIZE, SIZE), keep_ratio=True),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                        'scale_factor')),
    ]
    with DefaultScope.overwrite_default_scope('mmdet'):
        return CocoDataset(
            data_root=root, ann_file=f'annotations/instances_{split}.json',
            data_prefix=dict(img=f'{split}/'), metainfo=dict(classes=CLASSES),
            test_mode=True, pipeline=pipeline)


def test_files_and_counts(shapes_root):
    root, counts = shapes_root
    assert counts['train']['images'] == 8 and counts['val']['images'] == 4
    for split in ('train', 'val'):
        data = _load(root, split)
        assert [c['name'] for c in data['categories']] == list(CLASSES)
        assert len(data['images']) == counts[split]['images']
        assert len(data['annotations']) == counts[split]['instances']
        # 2-5 shapes are drawn; occlusion may cost at most a few.
        assert counts[split]['instances'] >= counts[split]['images']
        assert sorted(os.listdir(osp.join(root, split))) == sorted(
            im['file_name'] for im in data['images'])
        for ann in data['annotations']:
            assert ann['iscrowd'] == 0 and ann['area'] > 0
            assert all(len(p) >= 6 for p in ann['segmentation'])


def test_loads_through_the_pipeline(shapes_root):
    root, _ = shapes_root
    ds = _dataset(root, 'train')
    assert len(ds) == 8
    assert ds.metainfo['classes'] == CLASSES
    seen = set()
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        assert tuple(ds[i]['inputs'].shape) == (3, SIZE, SIZE)
        gt = sample.gt_instances
        masks = gt.masks.to_ndarray()
        boxes = gt.bboxes.numpy() if isinstance(gt.bboxes, torch.Tensor) \
            else gt.bboxes.tensor.numpy()
        assert len(gt) >= 1 and masks.shape == (len(gt), SIZE, SIZE)
        assert (boxes >= 0).all() and (boxes <= SIZE).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        # Visible parts of a z-ordered drawing never overlap.
        assert masks.sum(0).max() <= 1
        for mask, box in zip(masks, boxes):
            ys, xs = np.nonzero(mask)
            assert len(xs) > 0
            # The bbox is exactly the extent of the rasterised polygons.
            np.testing.assert_array_equal(
                box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        seen.update(gt.labels.tolist())
    assert seen <= {0, 1, 2} and len(seen) >= 2


def test_perfect_predictions_score_map_one(shapes_root):
    from mmdet.evaluation import CocoMetric
    root, _ = shapes_root
    ds = _dataset(root, 'val')
    metric = CocoMetric(
        ann_file=osp.join(root, 'annotations', 'instances_val.json'),
        metric=['bbox', 'segm'])
    metric.dataset_meta = ds.metainfo
    samples = []
    for i in range(len(ds)):
        gt = ds[i]['data_samples']
        inst = gt.gt_instances
        bboxes = inst.bboxes if isinstance(inst.bboxes, torch.Tensor) \
            else inst.bboxes.tensor
        samples.append(dict(
            img_id=gt.img_id, ori_shape=gt.ori_shape,
            pred_instances=dict(
                bboxes=bboxes.float(), labels=inst.labels,
                scores=torch.ones(len(inst)),
                masks=torch.from_numpy(inst.masks.to_ndarray()).bool())))
    metric.process({}, samples)
    results = metric.evaluate(len(samples))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['coco/segm_mAP'] == pytest.approx(1.0)


def test_deterministic_and_idempotent(shapes_root, tmp_path):
    root, counts = shapes_root
    again = str(tmp_path / 'again')
    assert make_shapes_coco.generate(again, num_train=8, num_val=4,
                                     size=SIZE, seed=0) == counts
    for split in ('train', 'val'):
        name = osp.join('annotations', f'instances_{split}.json')
        assert filecmp.cmp(osp.join(root, name), osp.join(again, name),
                           shallow=False)
        match, mismatch, errors = filecmp.cmpfiles(
            osp.join(root, split), osp.join(again, split),
            os.listdir(osp.join(root, split)), shallow=False)
        assert not mismatch and not errors and len(match) == \
            counts[split]['images']

    # A complete set is left alone...
    ann = osp.join(again, 'annotations', 'instances_val.json')
    stamp = os.stat(ann).st_mtime_ns
    make_shapes_coco.generate(again, num_train=8, num_val=4, size=SIZE,
                              seed=0)
    assert os.stat(ann).st_mtime_ns == stamp

    # ...and another seed gives another set.
    other = str(tmp_path / 'other')
    make_shapes_coco.generate(other, num_train=2, num_val=1, size=SIZE,
                              seed=1)
    a, b = (_load(r, 'train')['annotations'][:2] for r in (root, other))
    assert a != b


def test_polygons_rasterise_to_the_mask():
    rng = np.random.default_rng(3)
    for _ in range(20):
        image, shapes = make_shapes_coco.render_image(rng, SIZE)
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
        for shape in shapes:
            polys = make_shapes_coco.mask_to_polygons(shape['mask'])
            np.testing.assert_array_equal(
                make_shapes_coco.polygons_to_mask(polys, SIZE),
                shape['mask'])
