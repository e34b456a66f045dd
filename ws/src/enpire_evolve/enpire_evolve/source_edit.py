"""Read and rewrite module-level constants of a policy source file (the offline agent's edits).

Only literal assignments (``NAME = <literal>``) are touched; the rest of the file — comments,
strategies an agent wrote by hand — stays byte for byte as it was.
"""

from __future__ import annotations

import ast
import pprint
import threading

_PARSE_LOCK = threading.Lock()


def parse(text: str) -> ast.Module:
    """``ast.parse``, one thread at a time: CPython 3.11's AST constructor is not thread-safe
    (two agents' threads parsing at once fail with \"AST constructor recursion depth
    mismatch\")."""
    with _PARSE_LOCK:
        return ast.parse(text)


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
        tree = parse(source)
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
    tree = parse(source)
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
    parse(out)  # never write a file that does not parse
    return out


def _defined_name(node: ast.stmt) -> str | None:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        return target.id if isinstance(target, ast.Name) else None
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def _span(node: ast.stmt, lines: list[str]) -> tuple[int, int]:
    """0-based [start, end) lines of a top-level statement with its decorators and the comment
    lines right above it."""
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return start, node.end_lineno


def apply_idea(source: str, idea: str) -> tuple[str, list[str]]:
    """``source`` with the definitions of ``idea`` (a module of top-level functions, classes and
    constants) written into it: a definition of the same name is replaced, a new one is inserted
    before the first function or class; ``PARAMS`` of the idea adds the keys ``source`` lacks;
    the idea's module docstring and ``IDEA`` stay out. Returns the new text and the names
    written."""
    try:
        tree, itree = parse(source), parse(idea)
    except SyntaxError as e:
        raise SourceEditError(f"does not parse: {e}") from None
    lines, ilines = source.splitlines(keepends=True), idea.splitlines(keepends=True)
    existing = {_defined_name(n): n for n in tree.body if _defined_name(n)}
    replace, insert, names, imports = [], [], [], []
    params: dict = {}
    for node in itree.body:
        name = _defined_name(node)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            text = "".join(ilines[node.lineno - 1 : node.end_lineno])
            if text not in source:
                imports.append(text)
            continue
        if node is itree.body[0] and ast.get_docstring(itree) is not None:
            continue  # the idea's docstring
        if name is None:
            raise SourceEditError(f"line {node.lineno}: only definitions and NAME = value")
        if name == "IDEA":
            continue  # the idea's own description
        if name == "PARAMS":
            params = ast.literal_eval(node.value)
            continue
        a, b = _span(node, ilines)
        text = "".join(ilines[a:b])
        names.append(name)
        if name in existing:
            replace.append((*_span(existing[name], lines), text))
        else:
            insert.append(text)
    first_def = next(
        (n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))), None
    )
    at = _span(first_def, lines)[0] if first_def else len(lines)
    edits = sorted(replace, reverse=True)
    for a, b, text in edits:
        if a < at:
            at += text.count("\n") - (b - a)  # keep the insertion point after this edit
        lines[a:b] = [text]
    if insert:
        lines[at:at] = ["\n\n".join(t.rstrip("\n") + "\n" for t in insert) + "\n\n"]
    if imports:
        kinds = (ast.Import, ast.ImportFrom)
        last = max((n.end_lineno for n in tree.body if isinstance(n, kinds)), default=0)
        lines[last:last] = imports
    out = "".join(lines)
    if params:
        have = read_constants(out, ("PARAMS",)).get("PARAMS")
        if have is None:
            raise SourceEditError("the policy has no PARAMS to add the idea's parameters to")
        added = {k: v for k, v in params.items() if k not in have}
        if added:
            out = set_constants(out, {"PARAMS": {**have, **added}})
    out = _tidy_blank_lines(out)
    parse(out)  # never write a file that does not parse
    return out, names


def _tidy_blank_lines(text: str) -> str:
    out, blank = [], 0
    for line in text.splitlines(keepends=True):
        blank = blank + 1 if not line.strip() else 0
        if blank <= 2:
            out.append(line)
    return "".join(out)
