"""The test bed's images: a synthetic classification task where the
architecture matters (no downloads, deterministic from a seed). The
command line is ``tools/dataset_converters/make_testbed.py``; the data set
``atomnas_mm.TestbedDataset`` calls :func:`generate` on first use.

**The task.** A bank of :data:`NUM_MOTIFS` small motifs is drawn from the
seed: pixel-art patterns of sizes 3, 5, 7 and 9 (:data:`MOTIF_SIZES`),
each a structure of two levels on a transparent ground (a base shape with
a few rectangles, lines, dots and disks of the other level on it).
Every one of the :data:`NUM_CLASSES` classes owns two **key** motifs (no
motif is the key of two classes); the rest are **neutral**. An ``S x S``
RGB image (default 32x32) of class ``c`` shows

* both keys of ``c``, each once;
* 1-2 distractors (:data:`DISTRACTORS`): each, with probability
  :data:`FOREIGN_P`, ONE key of another class (never both keys of one:
  no other class is complete), else a neutral motif;
* at random cells of a jittered 2x2 grid (:data:`GRID`), each motif
  scaled by 1.2-1.7 (:data:`SCALE`; box-filtered, so edges stay sharp at any scale) and its two levels
  painted in two random colours of strong contrast, drawn in grid order
  (later cells may overlap earlier ones);
* on a background of a two-colour gradient with a smooth random texture,
  under 0-1 thin bars of random colour (occluders), a brightness and
  contrast jitter and pixel noise.

Why the architecture should matter:

* **width**: recognising a class is recognising the conjunction of its
  two keys among keys of other classes, so a net needs a detector for each
  of the ``2 x NUM_CLASSES`` keys (64 by default), in both contrast
  polarities (the colours are random), at any position and scale;
* **kernel sizes and stages**: the motifs span 3.6 to 15.3 pixels, so their
  detectors need receptive fields from a stem's to a whole stage's;
* **colour carries nothing**: every colour is drawn independently of the
  class, and every class's keys are drawn alike, so colour histograms and
  global statistics say next to nothing of the class
  (``benchmarks/testbed_check.py`` fits colour-only classifiers).

Written (``OUT_DIR/<key>/``, the key naming version, seed, sizes)::

    train_images.npy  uint8 (N, S, S, 3), RGB     train_labels.npy  int64 (N,)
    val_images.npy    uint8 (M, S, S, 3), RGB     val_labels.npy    int64 (M,)
    bank.npy          int8 (NUM_MOTIFS, 9, 9) motif levels (0 transparent)
    meta.json         classes, each class's keys, motif sizes, options,
                      counts, generation seconds

The arrays are plain ``.npy`` (no compression), so a data set memory-maps
them. ``meta.json`` is written last and marks a complete set: a second
call with the same arguments returns at once. The output depends only on
the arguments and :data:`VERSION` (the bank has its own seeded stream,
images are rendered in fixed chunks with their own seeds), and labels are
exactly balanced (counts differ by at most one).
"""
from __future__ import annotations

import json
import os
import os.path as osp
import time
from typing import Dict, Optional, Tuple

import numpy as np

#: Bumped whenever the rendering changes: part of the cache key.
VERSION = 9
DEFAULT_OUT = 'data/testbed'
NUM_CLASSES = 32
#: Keys per class: the class is their conjunction.
KEYS_PER_CLASS = 2
#: Motifs that are nobody's key (distractors only).
NUM_NEUTRAL = 32
NUM_MOTIFS = NUM_CLASSES * KEYS_PER_CLASS + NUM_NEUTRAL
#: Motif sides in template pixels; the bank cycles through them.
MOTIF_SIZES = (3, 5, 7, 9)
MAX_MOTIF = max(MOTIF_SIZES)
CLASSES = tuple(f'keys{c:02d}' for c in range(NUM_CLASSES))
SPLITS = ('train', 'val')
#: Images rendered per seeded chunk (fixed: changing it changes the data).
CHUNK = 1024
#: Rendered pixels per template pixel.
SCALE = (1.2, 1.7)
#: Motifs sit at the cells of a GRID x GRID grid, jittered by up to JITTER
#: pixels either way.
GRID = 2
JITTER = 2.0
#: Distractor motifs per image (inclusive range).
DISTRACTORS = (1, 2)
#: Probability that a distractor is a key of another class.
FOREIGN_P = 0.5
#: Occluding bars per image (inclusive range).
OCCLUDERS = (0, 1)
NOISE_STD = 6.0
#: Amplitude of the background's smooth texture (grey levels).
TEXTURE = (5.0, 20.0)
#: Least RGB distance between the two colours of a motif.
MIN_CONTRAST = 110.0


# ------------------------------------------------------------ the bank
def _template(s: int, rng: np.random.Generator) -> np.ndarray:
    """One s x s motif: int8 levels, 0 transparent, 1 and 2 the two
    colours (which is which carries nothing: colours are random)."""
    if s <= 3:
        return rng.choice(3, (s, s), p=(0.15, 0.425, 0.425)).astype(np.int8)
    yy, xx = np.mgrid[0:s, 0:s] + 0.5
    c = s / 2
    base = rng.integers(0, 4)
    if base == 0:  # full square
        mask = np.ones((s, s), bool)
    elif base == 1:  # disk
        mask = (yy - c) ** 2 + (xx - c) ** 2 <= (c + 0.3) ** 2
    elif base == 2:  # diamond
        mask = np.abs(yy - c) + np.abs(xx - c) <= c + 0.5
    else:  # plus
        w = max(1.0, s / 6)
        mask = (np.abs(yy - c) <= w) | (np.abs(xx - c) <= w)
    a = int(rng.integers(1, 3))
    t = np.where(mask, a, 0).astype(np.int8)
    for _ in range(int(rng.integers(2, 5))):
        level = 3 - a if rng.random() < 0.75 else a
        kind = rng.integers(0, 4)
        if kind == 0:  # rectangle
            h, w = rng.integers(1, s, 2)
            y0, x0 = rng.integers(0, s - h + 1), rng.integers(0, s - w + 1)
            part = (yy >= y0) & (yy < y0 + h) & (xx >= x0) & (xx < x0 + w)
        elif kind == 1:  # line: row, column or diagonal
            k, o = rng.integers(0, 4), rng.integers(0, s)
            part = [yy.astype(int) == o, xx.astype(int) == o,
                    (yy - xx).astype(int) == o - s // 2,
                    (yy + xx).astype(int) == o + s // 2][k]
        elif kind == 2:  # dot
            y0, x0 = rng.integers(0, s - 1, 2)
            d = rng.integers(1, 3)
            part = (yy >= y0) & (yy < y0 + d) & (xx >= x0) & (xx < x0 + d)
        else:  # disk or ring
            cy, cx = rng.uniform(1, s - 1, 2)
            r = rng.uniform(1.0, s / 2.5)
            d2 = (yy - cy) ** 2 + (xx - cx) ** 2
            part = d2 <= r * r
            if rng.random() < 0.5:
                part &= d2 >= (r - 1.2) ** 2
        t[part] = level
    return t


def _distance(a: np.ndarray, b: np.ndarray) -> int:
    """Differing cells of two templates of one size, the levels of ``b``
    swapped or not (a swap renders the same under random colours)."""
    swapped = np.where(b == 0, 0, 3 - b)
    return int(min((a != b).sum(), (a != swapped).sum()))


def make_bank(seed: int) -> Dict[str, np.ndarray]:
    """The motif bank and the classes' keys, drawn from ``seed``.

    Returns:
        dict: ``templates`` int8 (NUM_MOTIFS, MAX_MOTIF, MAX_MOTIF), each
        template in its top-left corner (0 elsewhere); ``sizes`` (NUM_MOTIFS,);
        ``keys`` (NUM_CLASSES, KEYS_PER_CLASS) motif indices;
        ``neutral`` (NUM_NEUTRAL,) motif indices.

    Templates are redrawn until both levels cover at least a fifth of the
    opaque cells and the template differs from every other of its size in
    at least a quarter of its cells (levels swapped or not).
    """
    rng = np.random.default_rng([seed, 7919, VERSION])
    templates = np.zeros((NUM_MOTIFS, MAX_MOTIF, MAX_MOTIF), np.int8)
    sizes = np.array([MOTIF_SIZES[i % len(MOTIF_SIZES)]
                      for i in range(NUM_MOTIFS)], np.int64)
    done: Dict[int, list] = {s: [] for s in MOTIF_SIZES}
    for i, s in enumerate(sizes):
        s = int(s)
        for _ in range(10000):
            t = _template(s, rng)
            n1, n2 = int((t == 1).sum()), int((t == 2).sum())
            if min(n1, n2) < 0.2 * (n1 + n2) or n1 + n2 < 0.5 * s * s:
                continue
            if all(_distance(t, u) >= max(3, s * s // 4) for u in done[s]):
                break
        else:  # pragma: no cover - the bank is far from full
            raise RuntimeError(f'make_bank: no distinct {s}x{s} motif left')
        done[s].append(t)
        templates[i, :s, :s] = t
    # Keys and neutral motifs: a random assignment, so every class's keys
    # are of random sizes.
    order = rng.permutation(NUM_MOTIFS)
    keys = order[:NUM_CLASSES * KEYS_PER_CLASS].reshape(NUM_CLASSES,
                                                        KEYS_PER_CLASS)
    neutral = np.sort(order[NUM_CLASSES * KEYS_PER_CLASS:])
    return dict(templates=templates, sizes=sizes, keys=keys,
                neutral=neutral)


# ------------------------------------------------------------ rendering
def _overlap(start: np.ndarray, cell: np.ndarray, cells: int,
             size: int) -> np.ndarray:
    """(n, size, cells): how much of pixel ``x`` (the interval [x, x+1])
    template cell ``p`` (the interval [start + p cell, start + (p+1) cell])
    covers. A template ``T`` (cells x cells) lands in the image as
    ``Wy @ T @ Wx^T``: a box filter, exact at any scale and offset."""
    x = np.arange(size, dtype=np.float32)[None, :, None]
    p = np.arange(cells, dtype=np.float32)[None, None, :]
    lo = start[:, None, None] + p * cell[:, None, None]
    hi = lo + cell[:, None, None]
    return np.clip(np.minimum(x + 1, hi) - np.maximum(x, lo), 0, None)


def _tent(cells: int, size: int, n: int) -> np.ndarray:
    """(n, size, cells): linear interpolation from a coarse grid of
    ``cells`` nodes spread over the image."""
    x = (np.arange(size, dtype=np.float32) + 0.5) / size * (cells - 1)
    p = np.arange(cells, dtype=np.float32)
    w = np.clip(1 - np.abs(x[:, None] - p[None, :]), 0, None)
    return np.broadcast_to(w, (n, size, cells))


def _colours(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0, 255, (n, 3)).astype(np.float32)


def _pair(rng: np.random.Generator, n: int) -> Tuple[np.ndarray,
                                                      np.ndarray]:
    """Two random hues per row, a light one (level 1) and a dark one
    (level 2): strong luminance contrast whatever the hues, and a fixed
    polarity per motif (a motif's light parts are always light)."""
    a, b = _colours(rng, n), _colours(rng, n)
    return 255 - (255 - a) * np.float32(0.45), b * np.float32(0.45)


def _paint(img: np.ndarray, cover: np.ndarray, colour: np.ndarray) -> None:
    """``img`` (n, S, S, 3) towards ``colour`` (n, 3) by ``cover``
    (n, S, S) in [0, 1], in place."""
    img += cover[..., None] * (colour[:, None, None, :] - img)


def layout(labels: np.ndarray, bank: Dict[str, np.ndarray],
           rng: np.random.Generator) -> np.ndarray:
    """Which motif sits at each grid cell: (n, GRID * GRID) motif
    indices, -1 for an empty cell. Both keys of the label, and distractors
    (single keys of distinct other classes, or neutral motifs)."""
    n, k = len(labels), NUM_CLASSES
    lo, hi = DISTRACTORS
    count = rng.integers(lo, hi + 1, n)
    # Other classes, distinct per image: offsets 1..k-1 in random order.
    offsets = np.argsort(rng.random((n, k - 1)), axis=1)[:, :hi] + 1
    other = (labels[:, None] + offsets) % k
    foreign = bank['keys'][other, rng.integers(0, KEYS_PER_CLASS, (n, hi))]
    neutral = bank['neutral'][rng.integers(0, NUM_NEUTRAL, (n, hi))]
    distract = np.where(rng.random((n, hi)) < FOREIGN_P, foreign, neutral)
    distract[np.arange(hi)[None, :] >= count[:, None]] = -1
    motifs = np.concatenate([bank['keys'][labels], distract], 1)
    cells = np.argsort(rng.random((n, GRID * GRID)), axis=1)
    out = np.full((n, GRID * GRID), -1, np.int64)
    np.put_along_axis(out, cells[:, :motifs.shape[1]], motifs, axis=1)
    return out


def render(labels: np.ndarray, size: int, rng: np.random.Generator,
           bank: Dict[str, np.ndarray],
           return_layout: bool = False):
    """Render one image per label.

    Args:
        labels: (n,) int class indices into :data:`CLASSES`.
        size: Image side in pixels.
        rng: The random stream (consumed in a fixed order).
        bank: :func:`make_bank`'s motifs and keys.
        return_layout: Also return :func:`layout`'s cells.

    Returns:
        np.ndarray: (n, size, size, 3) uint8 RGB (and the layout).
    """
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    f32 = np.float32
    rand = lambda lo, hi: rng.uniform(lo, hi, n).astype(f32)  # noqa
    cells = layout(labels, bank, rng)

    # Background: a two-colour gradient in a random direction and a smooth
    # texture (a random 5x5 field, interpolated) of a random colour.
    c0, c1 = _colours(rng, n), _colours(rng, n)
    y, x = (np.mgrid[0:size, 0:size].astype(f32) + f32(0.5)) - size / 2
    ang = rand(0, 2 * np.pi)
    g = (x[None] * np.cos(ang)[:, None, None] +
         y[None] * np.sin(ang)[:, None, None])
    t = np.clip(0.5 + g / f32(1.5 * size), 0, 1)[..., None]
    img = c0[:, None, None] + t * (c1 - c0)[:, None, None]
    w = _tent(5, size, n)
    field = w @ rng.standard_normal((n, 5, 5), dtype=f32) @ \
        w.transpose(0, 2, 1)
    tint = _colours(rng, n) / 255 - 0.5
    tint /= np.linalg.norm(tint, axis=1, keepdims=True) + 1e-6
    img += field[..., None] * (rand(*TEXTURE)[:, None] *
                               tint * np.sqrt(3))[:, None, None, :]

    # Motifs, cell by cell (row-major: later cells may overlap earlier).
    templates = bank['templates']
    sizes = bank['sizes']
    pitch = size / GRID
    for cell in range(GRID * GRID):
        motif = cells[:, cell]
        scale = rand(*SCALE)
        jx, jy = rand(-JITTER, JITTER), rand(-JITTER, JITTER)
        a, b = _pair(rng, n)
        rows = np.flatnonzero(motif >= 0)
        if not len(rows):
            continue
        m = motif[rows]
        # Small motifs are magnified more: every motif spans 6-15 pixels,
        # its cells 1.2-2.9 (fine detail in large motifs, coarse in small).
        cell_px = scale[rows] * np.sqrt(MAX_MOTIF / sizes[m]).astype(f32)
        extent = sizes[m].astype(f32) * cell_px
        cx = (cell % GRID + 0.5) * pitch + jx[rows]
        cy = (cell // GRID + 0.5) * pitch + jy[rows]
        x0 = np.clip(cx - extent / 2, 0, size - extent)
        y0 = np.clip(cy - extent / 2, 0, size - extent)
        wx = _overlap(x0, cell_px, MAX_MOTIF, size)
        wy = _overlap(y0, cell_px, MAX_MOTIF, size)
        t = templates[m]
        sub = img[rows]
        for level, colour in ((1, a[rows]), (2, b[rows])):
            cover = wy @ (t == level).astype(f32) @ wx.transpose(0, 2, 1)
            _paint(sub, cover, colour)
        img[rows] = sub

    # Occluders: thin horizontal or vertical bars anywhere, on top.
    count = rng.integers(OCCLUDERS[0], OCCLUDERS[1] + 1, n)
    for j in range(OCCLUDERS[1]):
        length, thick = rand(4, 12), rand(1, 2.5)
        vertical = rng.random(n) < 0.5
        bx, by = rand(0, size), rand(0, size)
        colour = _colours(rng, n)
        rows = np.flatnonzero(j < count)
        if not len(rows):
            continue
        wdt = np.where(vertical, thick, length)[rows]
        hgt = np.where(vertical, length, thick)[rows]
        cover = (_overlap(by[rows] - hgt / 2, hgt, 1, size) @
                 _overlap(bx[rows] - wdt / 2, wdt, 1, size).transpose(0, 2,
                                                                      1))
        sub = img[rows]
        _paint(sub, cover, colour[rows])
        img[rows] = sub

    # Camera: brightness/contrast jitter and noise.
    gain = rand(0.75, 1.15)[:, None, None, None]
    bias = rand(-20, 20)[:, None, None, None]
    img -= 128
    img *= gain
    img += 128 + bias
    img += f32(NOISE_STD) * rng.standard_normal(img.shape, dtype=f32)
    np.rint(img, out=img)
    img = np.clip(img, 0, 255, out=img).astype(np.uint8)
    return (img, cells) if return_layout else img


# ------------------------------------------------------------ the sets
def cache_dir(root: str = DEFAULT_OUT, seed: int = 0, num_train: int = 50000,
              num_val: int = 10000, size: int = 32) -> str:
    """Folder of the set for these arguments (the key holds VERSION)."""
    return osp.join(root, f'v{VERSION}_seed{seed}_train{num_train}_'
                    f'val{num_val}_{size}px')


def _split(split_id: int, num: int, seed: int, size: int,
           bank: Dict[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """Render one split: exactly balanced labels in a seeded order, images
    in seeded chunks of :data:`CHUNK`."""
    rng = np.random.default_rng([seed, split_id, VERSION])
    labels = rng.permutation(np.arange(num) % NUM_CLASSES).astype(np.int64)
    images = np.empty((num, size, size, 3), np.uint8)
    for c, start in enumerate(range(0, num, CHUNK)):
        chunk_rng = np.random.default_rng([seed, split_id, VERSION, c + 1])
        images[start:start + CHUNK] = render(labels[start:start + CHUNK],
                                             size, chunk_rng, bank)
    return images, labels


def generate(root: str = DEFAULT_OUT, seed: int = 0, num_train: int = 50000,
             num_val: int = 10000, size: int = 32,
             force: bool = False) -> Dict:
    """Generate the set, or find it in the cache.

    Args:
        root: Cache root; the set goes into :func:`cache_dir`.
        seed: Seed of everything (the bank and the images).
        num_train: Training images.
        num_val: Validation images.
        size: Image side (>= 24: a 3x3 grid of motifs up to 13.5 pixels).
        force: Render again even when a complete set is cached.

    Returns:
        dict: ``dir`` (the set's folder), ``classes``, ``keys``, ``counts``
        per split, ``seconds`` (rendering time when it was made),
        ``cached`` (True if nothing was rendered by this call).
    """
    if size < 24:
        raise ValueError(f'make_testbed: size must be >= 24, got {size}')
    if num_train < 1 or num_val < 1:
        raise ValueError(f'make_testbed: num_train and num_val must be >= 1, '
                         f'got {num_train}, {num_val}')
    out = cache_dir(root, seed, num_train, num_val, size)
    meta_path = osp.join(out, 'meta.json')
    options = dict(version=VERSION, seed=seed, num_train=num_train,
                   num_val=num_val, size=size)
    if not force and osp.isfile(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get('options') == options:
            return dict(meta, dir=out, cached=True)
    os.makedirs(out, exist_ok=True)
    if osp.isfile(meta_path):
        os.remove(meta_path)  # incomplete until written again
    t0 = time.perf_counter()
    bank = make_bank(seed)
    arrays = {'bank': bank['templates']}
    counts = {}
    for split_id, (split, num) in enumerate(zip(SPLITS,
                                                (num_train, num_val))):
        images, labels = _split(split_id, num, seed, size, bank)
        arrays[f'{split}_images'], arrays[f'{split}_labels'] = images, labels
        counts[split] = num
    for name, arr in arrays.items():
        # Temporary name, then rename: a killed run leaves no half file
        # under the final name.
        tmp = osp.join(out, f'{name}.tmp.npy')
        np.save(tmp, arr)
        os.replace(tmp, osp.join(out, f'{name}.npy'))
    meta = dict(options=options, classes=list(CLASSES),
                keys=bank['keys'].tolist(), neutral=bank['neutral'].tolist(),
                motif_sizes=bank['sizes'].tolist(), counts=counts,
                seconds=round(time.perf_counter() - t0, 2))
    with open(meta_path + '.tmp', 'w') as f:
        json.dump(meta, f, indent=1)
    os.replace(meta_path + '.tmp', meta_path)
    return dict(meta, dir=out, cached=False)
