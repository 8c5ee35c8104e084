"""ONNX export and onnxruntime sessions, shared by
``tools/deployment/pytorch2onnx.py`` and ``benchmarks/bench_deploy.py``.

onnx and onnxruntime are imported only when used.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

EXPORTERS = ('torchscript', 'dynamo')
DEFAULT_OPSET = 17


class Outputs(nn.Module):
    """``fn(module(x))`` as a module: e.g. a classifier's logits
    (``mode='tensor'``) or a backbone's tuple of feature maps."""

    def __init__(self, module: nn.Module,
                 fn: Optional[Callable] = None) -> None:
        super().__init__()
        self.module = module
        self.fn = fn

    def forward(self, x: torch.Tensor):
        out = self.module(x) if self.fn is None else self.fn(self.module, x)
        return tuple(out) if isinstance(out, (list, tuple)) else out


@contextlib.contextmanager
def _quiet_export():
    """Silence the exporters' progress lines and deprecation warnings (the
    TorchScript exporter is deprecated upstream but is what this project
    uses by default; see :func:`export_onnx`)."""
    loggers = [logging.getLogger(n) for n in ('torch.onnx', 'torch.export',
                                              'torch._dynamo', 'onnxscript')]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx(model: nn.Module, example: torch.Tensor, path: str,
                output_names: Sequence[str] = ('output', ),
                dynamic: bool = False, opset: int = DEFAULT_OPSET,
                exporter: str = 'torchscript') -> None:
    """Export ``model(example)`` (eval mode, no grad) to ``path``.

    Args:
        output_names: One name per output tensor.
        dynamic: Make the input's batch, height and width symbolic (and the
            outputs' batch, and height and width of 4-D outputs).
        opset: ONNX opset (the dynamo exporter implements >= 18).
        exporter: ``'torchscript'`` (``torch.onnx.export(dynamo=False)``:
            a 224x224 AtomNAS-C in ~4 s, any example; the default) or
            ``'dynamo'`` (the ``torch.export`` based exporter: ~30 s, needs
            onnxscript; a dynamic batch needs an example batch of at least
            2, which is then used).
    """
    if exporter not in EXPORTERS:
        raise ValueError(f'exporter must be one of {EXPORTERS}, got '
                         f'{exporter!r}')
    model = model.eval()
    names = list(output_names)
    kwargs = dict(input_names=['input'], output_names=names,
                  opset_version=opset)
    if exporter == 'torchscript':
        kwargs.update(dynamo=False, do_constant_folding=True)
        if dynamic:
            with torch.no_grad():
                outs = model(example)
            outs = outs if isinstance(outs, tuple) else (outs, )
            axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
            for n, o in zip(names, outs):
                axes[n] = {0: 'batch'} if o.dim() != 4 else \
                    {0: 'batch', 2: f'{n}_height', 3: f'{n}_width'}
            kwargs['dynamic_axes'] = axes
    else:
        kwargs['dynamo'] = True
        if dynamic:
            if example.shape[0] < 2:  # a size-1 dim would be specialised
                example = example.expand(2, *example.shape[1:]).contiguous()
            auto = torch.export.Dim.AUTO
            kwargs['dynamic_shapes'] = ({0: auto, 2: auto, 3: auto}, )
    with torch.no_grad(), _quiet_export():
        torch.onnx.export(model, (example, ), path, **kwargs)


def ort_session(path: str, threads: int = 2):
    """An onnxruntime CPU session: ``threads`` intra-op threads, one
    inter-op thread, all graph optimisations (BN folding, conv + activation
    fusion, NCHWc layouts)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(path, so,
                                providers=['CPUExecutionProvider'])


def run_session(session, x: Union[torch.Tensor, np.ndarray]
                ) -> List[np.ndarray]:
    """The session's outputs for one NCHW float input."""
    if torch.is_tensor(x):
        x = x.detach().contiguous().cpu().numpy()
    return session.run(None, {session.get_inputs()[0].name:
                              np.ascontiguousarray(x, dtype=np.float32)})


def max_rel_diff(ref: Sequence, out: Sequence) -> float:
    """max over outputs of max|ref - out| / max|ref|."""
    worst = 0.0
    for r, o in zip(ref, out):
        r = r.detach().cpu().numpy() if torch.is_tensor(r) else np.asarray(r)
        o = o.detach().cpu().numpy() if torch.is_tensor(o) else np.asarray(o)
        if r.shape != o.shape:
            raise ValueError(f'output shapes differ: {r.shape} vs {o.shape}')
        scale = float(np.abs(r).max()) or 1.0
        worst = max(worst, float(np.abs(r - o).max()) / scale)
    return worst
