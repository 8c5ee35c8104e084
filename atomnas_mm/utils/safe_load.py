"""Let torch's weights-only loader read mmengine checkpoints.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.7
calls ``torch.load`` without saying otherwise, so resume, ``load_from`` and
``init_cfg=Pretrained`` fail on the message-hub and numpy objects that an
mmengine checkpoint holds. Rather than switch the protection off, we allow
exactly those globals; any other global (a pickle that would run code) is
still refused.
"""
import builtins

import numpy as np
import torch


def mmengine_checkpoint_globals() -> list:
    """The globals that a real mmengine Runner checkpoint (with EMA) holds."""
    from mmengine.logging.history_buffer import HistoryBuffer
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    return [
        HistoryBuffer,
        _reconstruct,
        np.ndarray,
        np.dtype,
        type(np.dtype(np.float64)),  # numpy.dtypes.Float64DType
        type(np.dtype(np.int64)),  # numpy.dtypes.Int64DType
        scalar,
        # numpy's pickles name it; the weights-only unpickler still refuses
        # to call what it returns on anything but allowed globals.
        builtins.getattr,
    ]


def allow_mmengine_checkpoints() -> None:
    """Register :func:`mmengine_checkpoint_globals` as safe (idempotent)."""
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
