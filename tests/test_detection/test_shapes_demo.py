"""The Mask R-CNN demo config trains and is scored by CocoMetric (bbox and
segm) on the generated shapes, through the real runner: in one process,
and with tools/dist_train.sh as 2 gloo processes on the CPU."""
import os
import os.path as osp
import subprocess

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from tests.conftest import ROOT, config_path, shapes_options

CONFIG = config_path('mask_rcnn_atomnas', 'mask_rcnn_atomnas_demo_shapes.py')


def _options(opts):
    action = DictAction(option_strings=['--cfg-options'], dest='o')
    ns = type('NS', (), {})()
    action(None, ns, opts)
    return ns.o


def test_demo_config_trains_and_evaluates(tmp_path, shapes_root):
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(_options(shapes_options(shapes_root)))
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP'):
        assert 0.0 <= metrics[key] <= 1.0


def test_dist_train_two_cpu_processes(tmp_path, shapes_root):
    env = dict(os.environ, PYTHON=os.sys.executable, PORT='29631',
               OMP_NUM_THREADS='1')
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir',
         str(tmp_path), '--cfg-options', *shapes_options(shapes_root)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert osp.isfile(tmp_path / 'epoch_1.pth')
    log = open(next(osp.join(r, f) for r, _, fs in os.walk(tmp_path)
                    for f in fs if f.endswith('.log'))).read()
    assert 'Distributed training: True' in log
    assert "type='MMDistributedDataParallel'" in log
    assert 'coco/segm_mAP' in log
