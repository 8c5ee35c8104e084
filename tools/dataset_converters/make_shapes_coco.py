"""Write a small synthetic COCO instance segmentation data set of shapes.

    python tools/dataset_converters/make_shapes_coco.py [OUT_DIR]
        [--train N] [--val N] [--size S] [--seed K]

Each image (``S x S`` RGB, a noisy two-colour gradient background) holds
2-5 shapes of three categories, ``square`` (a possibly rotated rectangle
close to a square), ``circle`` and ``triangle``, with random sizes, colours,
positions and overlaps. The shapes are drawn in z-order into a label map;
an instance's mask is the part of it left visible on top of the shapes
drawn earlier. A shape that would leave an earlier one too small, mostly
hidden or with a hole (a polygon cannot hold one) is not drawn, so no
pixel of the image belongs to an unannotated shape.

Written::

    OUT_DIR/annotations/instances_train.json, instances_val.json
    OUT_DIR/train/000000.png ...,  OUT_DIR/val/000000.png ...

Annotations hold polygons that rasterise (pycocotools) to exactly the
visible pixels, bboxes of those pixels, their areas and ``iscrowd`` 0.
The output depends only on the arguments, and nothing is done when a
complete set made with the same arguments is already there.
"""
import argparse
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

DEFAULT_OUT = 'data/shapes_coco'
CATEGORIES = ('square', 'circle', 'triangle')
SPLITS = ('train', 'val')
MIN_SHAPES, MAX_SHAPES = 2, 5
# Shape diameters as a fraction of the image side.
MIN_SCALE, MAX_SCALE = 0.12, 0.4
# A shape keeps at least this fraction of its own pixels visible.
MIN_VISIBLE = 0.45
TRIES_PER_SHAPE = 20
# Subpixel precision of cv2's drawing calls (coordinates * 2**SHIFT).
SHIFT = 4


def min_area(size: int) -> int:
    """Smallest visible area (pixels) an instance may keep: 8x8 at 128."""
    return max(12, (size // 16)**2)


def _draw(kind: str, center: Tuple[float, float], diameter: float,
          angle: float, aspect: float, jitter: np.ndarray,
          size: int) -> np.ndarray:
    """Rasterise one shape as a uint8 0/1 mask of ``size x size``."""
    mask = np.zeros((size, size), np.uint8)
    scale = 1 << SHIFT
    cx, cy = center
    if kind == 'circle':
        cv2.circle(mask, (round(cx * scale), round(cy * scale)),
                   round(diameter / 2 * scale), 1, -1, cv2.LINE_8, SHIFT)
        return mask
    if kind == 'square':
        # Diagonal 1.25 x diameter: about a circle's area at aspect 1.
        w = 1.25 * diameter / np.sqrt(1 + aspect**2)
        pts = cv2.boxPoints(((cx, cy), (w, w * aspect), angle))
    else:
        # Vertices near 120 degrees apart, so the triangle is never a
        # sliver that could pass for something else.
        theta = np.deg2rad(angle + np.array([0., 120., 240.]) + jitter[:3])
        radius = diameter / 2 * jitter[3:]
        pts = np.stack([cx + radius * np.cos(theta),
                        cy + radius * np.sin(theta)], 1)
    cv2.fillPoly(mask, [np.round(pts * scale).astype(np.int32)], 1,
                 cv2.LINE_8, SHIFT)
    return mask


def mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """Polygons (COCO ``[x0, y0, x1, y1, ...]``) of a binary mask's outer
    contours.

    Contours are traced on the mask upsampled 2x, so that vertices sit on
    the pixels' outer edges rather than their centres: pycocotools then
    rasterises the polygons back to exactly the mask (holes excepted).
    """
    big = np.kron(mask.astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        pts = (c.reshape(-1, 2).astype(np.float64) + 0.5) / 2
        if len(pts) >= 3:
            polys.append([round(float(v), 2) for v in pts.ravel()])
    return polys


def polygons_to_mask(polys: List[List[float]], size: int) -> np.ndarray:
    """Rasterise COCO polygons the way the COCO API and mmdet do."""
    rles = mask_utils.frPyObjects(polys, size, size)
    return mask_utils.decode(mask_utils.merge(rles))


def _visible(label: np.ndarray, n: int) -> List[np.ndarray]:
    return [(label == i + 1).astype(np.uint8) for i in range(n)]


def _acceptable(masks: List[np.ndarray], full: List[np.ndarray],
                size: int) -> bool:
    """Every instance is large, visible and hole-free enough to annotate."""
    for vis, whole in zip(masks, full):
        area = int(vis.sum())
        if area < min_area(size) or area < MIN_VISIBLE * whole.sum():
            return False
        if not np.array_equal(polygons_to_mask(mask_to_polygons(vis), size),
                              vis):
            return False  # a hole, which a polygon cannot represent
    return True


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A linear gradient between two random colours (float32, HxWx3)."""
    c0, c1 = rng.uniform(0, 255, (2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = np.cos(angle) * xx + np.sin(angle) * yy
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    return (c0 + (c1 - c0) * t[..., None]).astype(np.float32)


def _colour(rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
    """A random colour that stands out from the background's mean."""
    for _ in range(50):
        c = rng.uniform(0, 255, 3)
        if np.linalg.norm(c - avoid) > 90:
            return c
    return 255 - avoid  # the complement always differs enough


def render_image(rng: np.random.Generator, size: int
                 ) -> Tuple[np.ndarray, List[dict]]:
    """Draw one image.

    Returns:
        tuple: the RGB uint8 image and one dict per instance (``category``
        index, visible ``mask``), bottom to top.
    """
    image = _background(rng, size)
    mean = image.reshape(-1, 3).mean(0)
    label = np.zeros((size, size), np.int32)
    shapes: List[dict] = []
    full: List[np.ndarray] = []
    target = int(rng.integers(MIN_SHAPES, MAX_SHAPES + 1))
    for _ in range(target):
        for _ in range(TRIES_PER_SHAPE):
            cat = int(rng.integers(len(CATEGORIES)))
            diameter = rng.uniform(MIN_SCALE, MAX_SCALE) * size
            margin = 0.625 * diameter  # a square's half diagonal
            center = tuple(rng.uniform(margin, size - 1 - margin, 2))
            whole = _draw(CATEGORIES[cat], center, diameter,
                          rng.uniform(0, 360), rng.uniform(0.75, 1.33),
                          np.concatenate([rng.uniform(-20, 20, 3),
                                          rng.uniform(0.8, 1.0, 3)]), size)
            trial = label.copy()
            trial[whole > 0] = len(shapes) + 1
            if _acceptable(_visible(trial, len(shapes) + 1), full + [whole],
                           size):
                label = trial
                full.append(whole)
                shapes.append(dict(category=cat, colour=_colour(rng, mean)))
                break
    for i, shape in enumerate(shapes):
        image[label == i + 1] = shape['colour']
    # Noise over everything, so neither shapes nor background are flat.
    image += rng.normal(0, 8, image.shape).astype(np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    for shape, vis in zip(shapes, _visible(label, len(shapes))):
        shape['mask'] = vis
    return image, shapes


def _annotation(mask: np.ndarray, category: int, image_id: int,
                ann_id: int, size: int) -> Optional[dict]:
    polys = mask_to_polygons(mask)
    if not polys:
        return None
    raster = polygons_to_mask(polys, size)
    area = int(raster.sum())
    if area < min_area(size):
        return None  # safety net; render_image already keeps these out
    ys, xs = np.nonzero(raster)
    x0, y0 = int(xs.min()), int(ys.min())
    return dict(id=ann_id, image_id=image_id, category_id=category + 1,
                segmentation=polys, area=area,
                bbox=[x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
                iscrowd=0)


def _info(split: str, num: int, size: int, seed: int) -> dict:
    return dict(description=f'synthetic shapes ({split})', num_images=num,
                size=size, seed=seed, version='1')


def _complete(out_dir: str, split: str, info: dict) -> Optional[dict]:
    """The split's counts when it is already written with these
    arguments, else None."""
    path = osp.join(out_dir, 'annotations', f'instances_{split}.json')
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    if data.get('info') != info or len(data.get('images', ())) != \
            info['num_images']:
        return None
    if not all(osp.isfile(osp.join(out_dir, split, im['file_name']))
               for im in data['images']):
        return None
    return dict(images=len(data['images']),
                instances=len(data['annotations']))


def generate_split(out_dir: str, split: str, num: int, size: int,
                   seed: int) -> dict:
    """Write one split's images and annotation file; return its counts."""
    info = _info(split, num, size, seed)
    done = _complete(out_dir, split, info)
    if done is not None:
        return done
    img_dir = osp.join(out_dir, split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    images, annotations = [], []
    split_key = SPLITS.index(split) if split in SPLITS else len(SPLITS)
    for i in range(num):
        # One generator per image: an image depends on (seed, split, index)
        # only, not on how many images come before it.
        rng = np.random.default_rng([seed, split_key, i])
        image, shapes = render_image(rng, size)
        name = f'{i:06d}.png'
        cv2.imwrite(osp.join(img_dir, name),
                    cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        images.append(dict(id=i + 1, file_name=name, width=size,
                           height=size))
        for shape in shapes:
            ann = _annotation(shape['mask'], shape['category'], i + 1,
                              len(annotations) + 1, size)
            if ann is not None:
                annotations.append(ann)
    data = dict(
        info=info, licenses=[], images=images, annotations=annotations,
        categories=[dict(id=i + 1, name=n, supercategory='shape')
                    for i, n in enumerate(CATEGORIES)])
    path = osp.join(out_dir, 'annotations', f'instances_{split}.json')
    # The annotation file is written last and atomically: its presence
    # marks the split complete.
    with open(f'{path}.tmp', 'w') as f:
        json.dump(data, f)
    os.replace(f'{path}.tmp', path)
    return dict(images=len(images), instances=len(annotations))


def generate(out_dir: str = DEFAULT_OUT, num_train: int = 400,
             num_val: int = 80, size: int = 128, seed: int = 0) -> Dict[
                 str, dict]:
    """Write the data set (or keep it, when already complete).

    Args:
        out_dir: Root of the data set.
        num_train: Number of training images.
        num_val: Number of validation images.
        size: Side of the square images, in pixels.
        seed: Seed of the random generator; the same arguments always give
            the same files.

    Returns:
        dict: ``{'train': {'images': N, 'instances': M}, 'val': {...}}``.
    """
    if size < 32:
        raise ValueError(f'size must be at least 32, got {size}')
    return {
        split: generate_split(out_dir, split, num, size, seed)
        for split, num in zip(SPLITS, (num_train, num_val))
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out_dir', nargs='?', default=DEFAULT_OUT)
    parser.add_argument('--train', type=int, default=400,
                        help='number of training images')
    parser.add_argument('--val', type=int, default=80,
                        help='number of validation images')
    parser.add_argument('--size', type=int, default=128,
                        help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    counts = generate(args.out_dir, args.train, args.val, args.size,
                      args.seed)
    print(', '.join(f'{s}: {c["images"]} images / {c["instances"]} instances'
                    for s, c in counts.items()) + f' in {args.out_dir}')


if __name__ == '__main__':
    main()
