"""The demo that ``make demo`` runs: an AtomNAS search on scikit-learn's
digits.

    python tools/run_demo.py [--work-dir work_dirs/demo_digits]
    python tools/run_demo.py --config configs/atomnas/atomnas_demo_digits_budget.py

Writes the data set (once), searches and trains the demo config through the
real mmengine Runner (penalty, shrinkage, EMA, BN recalibration) with
progress output, draws the searched net and the MACs curve, and ends with a
summary.
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The drawing tools are scripts of their own, not package code.
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis_tools'))

import plot_flops  # noqa: E402
import visualize_arch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import atomnas_mm  # noqa: E402,F401
from atomnas_mm.models.arch import count, load_spec  # noqa: E402
from atomnas_mm.utils.digits import convert  # noqa: E402

CONFIG = osp.join(ROOT, 'configs', 'atomnas', 'atomnas_demo_digits.py')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=CONFIG,
                        help='a digits demo config (default: '
                        'configs/atomnas/atomnas_demo_digits.py)')
    parser.add_argument('--work-dir', default=None,
                        help='default: work_dirs/demo_digits for the default '
                        'config, else work_dirs/<config name>')
    parser.add_argument('--data-root', default='data/digits')
    args = parser.parse_args()
    if args.work_dir is None:
        name = osp.splitext(osp.basename(args.config))[0]
        args.work_dir = 'work_dirs/demo_digits' if osp.abspath(
            args.config) == CONFIG else osp.join('work_dirs', name)

    counts = convert(args.data_root)
    print(f'[demo] digits: {counts["train"]} train / {counts["val"]} val '
          f'images in {args.data_root}')
    cfg = Config.fromfile(args.config)
    cfg.work_dir = args.work_dir
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = args.data_root
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val_loop.run()  # EMA weights, BN recalibrated

    work = osp.abspath(args.work_dir)
    spec_path = osp.join(work, 'searched_arch.json')
    pictures = osp.join(work, 'pictures')
    print('\n[demo] drawing the searched net and the MACs curve')
    visualize_arch.main([spec_path, '--out-dir', pictures,
                         '--show-title', 'AtomNAS demo (digits)'])
    plot_flops.main([work, '--out', osp.join(pictures, 'macs_curve.png')])

    initial = count(cfg.model.backbone.arch, 16, num_classes=10).macs
    searched = count(load_spec(spec_path), 16, num_classes=10).macs
    print('\n[demo] ---------------------------------------------------')
    print(f'[demo] validation top-1 (EMA, BN recalibrated): '
          f'{metrics["accuracy/top1"]:.2f}%')
    print(f'[demo] MACs at 16x16: supernet {initial:,} -> searched '
          f'{searched:,} ({100 * (searched - initial) / initial:+.1f}%)')
    target = (cfg.optim_wrapper.get('penalty') or {}).get('target')
    if target and 'macs' in target:
        print(f'[demo] target {target["macs"]:,.0f} MACs: searched '
              f'{100 * (searched / target["macs"] - 1):+.2f}% from it')
    print(f'[demo] searched spec:         {spec_path}')
    print(f'[demo] deployable checkpoint: {osp.join(work, "deploy.pth")}')
    print(f'[demo] pictures:              {pictures}/')
    print(f'[demo] logs and checkpoints:  {work}')


if __name__ == '__main__':
    main()
