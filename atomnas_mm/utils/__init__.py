from .seams import (allow_mmengine_checkpoints, mmengine_checkpoint_globals,
                    register_checkpoint_loader, register_config_package,
                    setup_launcher)

__all__ = ['allow_mmengine_checkpoints', 'mmengine_checkpoint_globals',
           'register_checkpoint_loader', 'register_config_package',
           'setup_launcher']
