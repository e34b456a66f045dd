"""Read and rewrite module-level constants of a policy source file (the offline agent's edits).

Only literal assignments (``NAME = <literal>``) are touched; the rest of the file — comments,
strategies an agent wrote by hand — stays byte for byte as it was.
"""

from __future__ import annotations

import ast
import pprint


class SourceEditError(ValueError):
    pass


def _assignment(tree: ast.Module, name: str) -> ast.Assign | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return node
    return None


def read_constants(source: str, names: tuple[str, ...]) -> dict:
    """The literal values of module-level ``names`` (missing ones are left out)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise SourceEditError(f"the policy source does not parse: {e}") from None
    out = {}
    for name in names:
        node = _assignment(tree, name)
        if node is None:
            continue
        try:
            out[name] = ast.literal_eval(node.value)
        except ValueError:
            raise SourceEditError(f"{name} is not a literal") from None
    return out


def _literal(value) -> str:
    if isinstance(value, dict):
        return pprint.pformat(_rounded(value), width=80, sort_dicts=False)
    return repr(_rounded(value))


def _rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def set_constants(source: str, values: dict) -> str:
    """``source`` with each ``NAME = ...`` of ``values`` replaced by the new literal."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    spans = []
    for name, value in values.items():
        node = _assignment(tree, name)
        if node is None:
            raise SourceEditError(f"no module-level assignment to {name}")
        spans.append((node.lineno, node.end_lineno, f"{name} = {_literal(value)}\n"))
    for start, end, text in sorted(spans, reverse=True):
        lines[start - 1 : end] = [text]
    out = "".join(lines)
    ast.parse(out)  # never write a file that does not parse
    return out
