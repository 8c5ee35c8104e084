"""A linear classification head with dropout before the classifier."""
import torch
from mmpretrain.models.heads import LinearClsHead
from torch import nn

from ...registry import MODELS


@MODELS.register_module()
class DropoutLinearClsHead(LinearClsHead):
    """mmpretrain's ``LinearClsHead`` with dropout on the pooled features
    (the paper: 0.2 during the search, 0.28 when retraining "+" nets).

    Args:
        dropout_rate: Probability of zeroing a feature in training.
        **kwargs: Everything ``LinearClsHead`` takes.
    """

    def __init__(self, dropout_rate: float = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f'dropout_rate must be in [0, 1), got '
                             f'{dropout_rate}')
        self.dropout = nn.Dropout(dropout_rate)

    def pre_logits(self, feats: tuple) -> torch.Tensor:
        return self.dropout(super().pre_logits(feats))
