"""Write scikit-learn's handwritten digits as a class-folder image tree.

    python tools/dataset_converters/digits_to_folder.py [OUT_DIR]
    python tools/dataset_converters/digits_to_folder.py data/digits_hard \
        --per-class 30 --label-noise 0.2

The 1,797 8x8 images (10 classes, shipped inside scikit-learn) become PNGs
under ``OUT_DIR/{train,val}/<digit>/``, a stratified 80/20 split with a
fixed seed, readable by mmpretrain's ``CustomDataset``. Does nothing when
the tree is already complete.

``--per-class N`` keeps N training images per class and ``--label-noise p``
files each kept training image under a wrong class with probability p (the
validation images stay clean and complete): a harder task, for comparisons
that the full set hides (``benchmarks/ablations.py``).
"""
import argparse

# The writer lives in the package (the demo, benchmarks and tests use it);
# ``from digits_to_folder import convert`` keeps working for scripts.
from atomnas_mm.utils.digits import DEFAULT_OUT, convert  # noqa: F401


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out_dir', nargs='?', default=DEFAULT_OUT)
    parser.add_argument('--per-class', type=int, default=None,
                        help='training images kept per class')
    parser.add_argument('--label-noise', type=float, default=0.0,
                        help='probability of a wrong training label')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    counts = convert(args.out_dir, args.seed, args.per_class,
                     args.label_noise)
    print(f'digits: {counts["train"]} train / {counts["val"]} val images '
          f'in {args.out_dir}')


if __name__ == '__main__':
    main()
