"""Variant effect scores as plug-ins in one registry (see docs/scores.md, "Adding a score").

A score is one module in `vepcli/scoring/plugins/` that builds a `Score` (name, meaning and sign, output
type, what it needs from the engine, how it computes its value or why it is empty) and passes it to
`register`; importing this package imports every such module. The built-in ones are `llr`, `emb_l2`,
`emb_cos` and the supervised `probe` and `finetune`. Importing this package loads neither torch nor numpy.
"""

import importlib
import pkgutil

from vepcli.scoring import plugins
from vepcli.scoring.registry import (
    CAUSAL_LL,
    MASKED_LOGP,
    POOLED,
    Empty,
    Reading,
    Score,
    ScoreInputs,
    default_names,
    get,
    needs,
    numeric_columns,
    objective_notes,
    register,
    unregister,
    zero_shot_names,
)
from vepcli.scoring.supervised import SupervisedLoader, SupervisedModel, predict_all

for _module in pkgutil.iter_modules(plugins.__path__):
    importlib.import_module(f"{plugins.__name__}.{_module.name}")

__all__ = [
    "CAUSAL_LL",
    "MASKED_LOGP",
    "POOLED",
    "Empty",
    "Reading",
    "Score",
    "ScoreInputs",
    "SupervisedLoader",
    "SupervisedModel",
    "default_names",
    "get",
    "needs",
    "numeric_columns",
    "objective_notes",
    "predict_all",
    "register",
    "unregister",
    "zero_shot_names",
]
