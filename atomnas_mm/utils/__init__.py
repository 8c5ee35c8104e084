from .seams import (mmengine_checkpoint_globals, plain_history_buffers,
                    register_config_package, setup_launcher,
                    use_safe_checkpoint_loading)

__all__ = ['mmengine_checkpoint_globals', 'plain_history_buffers',
           'register_config_package', 'setup_launcher',
           'use_safe_checkpoint_loading']
