"""Which runs are the same training: parameters that differ only in how a run is evaluated do not
change its trajectory (same init, same data stream), so such runs share one flow and count once
in the verdicts. Standard library only: the workflow imports it while it builds the DAG."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

EVALUATION_KEYS = ("eval_prompts", "eval_seed", "eval_lengths")


def training_identity(params: Mapping[str, Any]) -> str:
    """The parameters that fix a run's trajectory, as canonical JSON."""
    return json.dumps(
        {k: v for k, v in params.items() if k not in EVALUATION_KEYS}, sort_keys=True, default=str
    )
