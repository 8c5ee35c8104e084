"""Small file helpers shared by tools and benchmarks."""
import json
import os
from typing import Any, Optional


def dump_json_atomic(obj: Any, path: str, indent: Optional[int] = None) -> str:
    """Write ``obj`` as JSON to ``path`` through a temporary file and a
    rename, so a crash (or an object JSON cannot encode) never leaves a
    half-written file where a complete one was: resumable results survive."""
    tmp = f'{path}.tmp'
    try:
        with open(tmp, 'w') as f:
            json.dump(obj, f, indent=indent)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
