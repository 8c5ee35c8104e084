"""Converters from other code's checkpoints to AtomNASNet checkpoints."""
from .authors import (ConversionError, Converted, convert_authors_checkpoint,
                      save_converted, summary)
from .safe_pickle import (BrokenFileError, Placeholder, UnsafePickleError,
                          safe_torch_load)

__all__ = [
    'ConversionError', 'Converted', 'convert_authors_checkpoint',
    'save_converted', 'summary', 'BrokenFileError', 'Placeholder',
    'UnsafePickleError', 'safe_torch_load'
]
