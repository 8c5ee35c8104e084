"""The search, as parts a hook orchestrates: importance tracking, the
decision (pure functions), the search state, the shape-change transaction,
the export."""
from .budget import BudgetError, BudgetPlan, parse_target
from .export import recalibrated_copy, save_deploy_checkpoint
from .importance import (EMAImportance, ImportanceTracker, current_alpha,
                         warmup_decay)
from .policy import (RemovalPlan, block_relative, dead_masks, mask_cost,
                     plan_removal)
from .state import SearchState, parse_penalty
from .transaction import reshape_search, reshape_to_checkpoint

__all__ = ['BudgetPlan', 'BudgetError', 'parse_target',
           'EMAImportance', 'ImportanceTracker', 'current_alpha',
           'warmup_decay', 'RemovalPlan', 'block_relative', 'dead_masks',
           'mask_cost', 'plan_removal', 'SearchState', 'parse_penalty',
           'reshape_search', 'reshape_to_checkpoint', 'recalibrated_copy',
           'save_deploy_checkpoint']
