from .safe_load import allow_mmengine_checkpoints, mmengine_checkpoint_globals

__all__ = ['allow_mmengine_checkpoints', 'mmengine_checkpoint_globals']
from .config import register_config_package

__all__ += ['register_config_package']
