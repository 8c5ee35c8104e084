from .epoch_step_lr import EpochStepLR
from .warmup_exp_decay_lr import WarmupExpDecayLR

__all__ = ['EpochStepLR', 'WarmupExpDecayLR']
