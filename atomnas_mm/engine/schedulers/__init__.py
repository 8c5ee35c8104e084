from .epoch_step_lr import EpochStepLR

__all__ = ['EpochStepLR']
