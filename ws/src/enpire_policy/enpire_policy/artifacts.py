"""Versioned training artifacts: one new directory per run, never overwritten.

    <root>/<recipe>/<UTC time>-<n>/manifest.json   recipe, code commit, data ids, config,
                                                  metrics, files, created
    <root>/<recipe>/<UTC time>-<n>/...             model.pt, params.json, ...

Once a run is finished its files are made read-only.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def new_artifact_dir(root: str | Path, recipe: str) -> Path:
    base = Path(root) / recipe
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in range(10_000):
        d = base / f"{stamp}-{n:03d}"
        try:
            d.mkdir()  # exclusive: two runs never share a directory
            return d
        except FileExistsError:
            continue
    raise RuntimeError(f"no free artifact directory under {base}")


def finish(path: Path, manifest: dict) -> Path:
    files = sorted(p.name for p in path.iterdir() if p.is_file())
    manifest = {**manifest, "files": files, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                     time.gmtime())}  # fmt: skip
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    for p in path.iterdir():
        if p.is_file():
            os.chmod(p, 0o444)
    return path / "manifest.json"


def load_manifest(path: str | Path) -> dict:
    p = Path(path)
    if not (p / "manifest.json").is_file():
        raise FileNotFoundError(f"{p} is not an enpire artifact (no manifest.json)")
    return json.loads((p / "manifest.json").read_text())


def load_policy(path: str | Path):
    """The policy an artifact describes, ready to act (trained weights or found params)."""
    import importlib

    m = load_manifest(path)
    load = m.get("load", {})
    if "module" in load:
        return getattr(importlib.import_module(load["module"]), load["factory"])(path)
    from enpire_policy.recipes.base import build_policy

    return build_policy(m.get("policy", {}), load.get("factory_kwargs", {}))
