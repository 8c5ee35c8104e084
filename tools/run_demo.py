"""The demo that ``make demo`` runs: AtomNAS on scikit-learn's digits.

    python tools/run_demo.py [--work-dir work_dirs/demo_digits]

Writes the data set (once), trains the demo config through the real
mmengine Runner with progress output, and ends with a summary.
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))

from digits_to_folder import convert  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import atomnas_mm  # noqa: E402,F401
from atomnas_mm.models.arch import count  # noqa: E402

CONFIG = osp.join(ROOT, 'configs', 'atomnas', 'atomnas_demo_digits.py')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/demo_digits')
    parser.add_argument('--data-root', default='data/digits')
    args = parser.parse_args()

    counts = convert(args.data_root)
    print(f'[demo] digits: {counts["train"]} train / {counts["val"]} val '
          f'images in {args.data_root}')
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = args.work_dir
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = args.data_root
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val_loop.run()
    backbone = runner.model.backbone
    macs = count(backbone.arch_spec, 16, num_classes=10).macs
    print('\n[demo] ---------------------------------------------------')
    print(f'[demo] validation top-1: {metrics["accuracy/top1"]:.2f}%')
    print(f'[demo] MACs at 16x16: {macs:,}')
    print(f'[demo] checkpoints and logs: {osp.abspath(args.work_dir)}')


if __name__ == '__main__':
    main()
