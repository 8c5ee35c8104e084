"""Step decay every fractional number of epochs (TF's "x0.97 every 2.4
epochs")."""
from mmengine.optim.scheduler import StepLR
from mmengine.optim.scheduler.param_scheduler import INF

from ...registry import PARAM_SCHEDULERS


@PARAM_SCHEDULERS.register_module()
class EpochStepLR(StepLR):
    """``StepLR`` whose ``step_size`` may be a fraction of an epoch count.

    mmengine's ``StepLR`` with ``convert_to_iter_based=True`` multiplies
    ``step_size`` by the epoch length and then tests ``step % step_size ==
    0``: with 2.4 epochs the product is rarely a whole number, and the
    learning rate then never decays. Here it is rounded to whole iterations
    (an error below one iteration per step). Use it with
    ``convert_to_iter_based=True``.
    """

    @classmethod
    def build_iter_from_epoch(cls, *args, step_size, begin=0, end=INF,
                              by_epoch=True, epoch_length=None, **kwargs):
        if not by_epoch:
            raise ValueError('EpochStepLR: by_epoch must be True (step_size '
                             'is in epochs)')
        if not epoch_length or epoch_length <= 0:
            raise ValueError(f'EpochStepLR: epoch_length must be positive, '
                             f'got {epoch_length}')
        return cls(*args, step_size=max(1, round(step_size * epoch_length)),
                   begin=int(begin * epoch_length),
                   end=end if end == INF else int(end * epoch_length),
                   by_epoch=False, **kwargs)
