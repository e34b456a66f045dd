"""Policy-improvement recipes, by name (the ``recipe`` of a Train goal)."""

from __future__ import annotations

import importlib

# name -> (module, function, hyper-parameter dataclass, one-line description)
RECIPES = {
    "heuristic_search": ("enpire_policy.recipes.search", "run", "SearchParams",
                         "cross-entropy search over a rule-based policy's parameters"),
    "bc_mlp": ("enpire_policy.recipes.bc", "run_mlp", "BCParams",
               "behaviour cloning, MLP on the state, from recorded successes"),
    "bc_cnn": ("enpire_policy.recipes.bc", "run_cnn", "BCParams",
               "behaviour cloning, small CNN on camera frames, from recorded successes"),
    "residual_rl": ("enpire_policy.recipes.rl", "run", "ResidualParams",
                    "online RL (evolution strategies) of a residual on the heuristic"),
}  # fmt: skip


def recipe_function(name: str):
    module, fn, _params, _ = RECIPES[name]
    return getattr(importlib.import_module(module), fn)


def recipe_params(name: str) -> type:
    """The recipe's hyper-parameter dataclass."""
    module, _fn, params, _ = RECIPES[name]
    return getattr(importlib.import_module(module), params)
