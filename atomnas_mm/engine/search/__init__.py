"""The search, as parts a hook orchestrates: importance tracking, the
decision (pure functions), the shape-change transaction, the export."""
from .budget import BudgetController, BudgetError, parse_target
from .export import recalibrated_copy, save_deploy_checkpoint
from .importance import ImportanceTracker, current_alpha
from .policy import RemovalPlan, dead_masks, plan_removal
from .transaction import reshape_search, reshape_to_checkpoint, rewrap

__all__ = ['BudgetController', 'BudgetError', 'parse_target',
           'ImportanceTracker', 'current_alpha', 'RemovalPlan', 'dead_masks',
           'plan_removal', 'reshape_search', 'reshape_to_checkpoint',
           'rewrap', 'recalibrated_copy', 'save_deploy_checkpoint']
