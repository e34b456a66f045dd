"""Git for the agents: one shared bare repository, one clone (working tree) per agent.

    shared = SharedRepo.create(run_dir / "shared.git")          # seeded with the starter policy
    tree = AgentTree.open(shared, run_dir / "agents" / "agent_0", "agent_0")
    tree.write("policy/pusht_policy.py", text)
    sha = tree.commit("hypothesis: ...")                           # on branch agent_0
    tree.publish()                                                 # push agent_0 to shared
    tree.discard(parent)                                           # back to parent; the commit
                                                                   # stays under refs/experiments/

Each agent works in its own clone, so whatever it does to its files (deletes, conflicts, broken
code) stays there: the shared repository only receives branch pushes made by the host, and
``main`` is never written after the seed commit. Everything is real git through subprocess.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

STARTER_DIR = Path(__file__).resolve().parent / "starter"
POLICY_MODULE = "policy/pusht_policy.py"
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "enpire",
    "GIT_AUTHOR_EMAIL": "agents@enpire.local",
    "GIT_COMMITTER_NAME": "enpire",
    "GIT_COMMITTER_EMAIL": "agents@enpire.local",
    "GIT_TERMINAL_PROMPT": "0",
}


class GitError(RuntimeError):
    pass


def git(cwd: str | Path, *args: str, check: bool = True, timeout: float = 60.0,
        extra_env: dict | None = None) -> str:  # fmt: skip
    env = dict(os.environ, **_GIT_ENV)
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)
    env.update(extra_env or {})
    r = subprocess.run(
        ["git", *args], cwd=str(cwd), capture_output=True, text=True, env=env, timeout=timeout
    )
    if check and r.returncode != 0:
        raise GitError(f"git {' '.join(args)} (in {cwd}): {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout.strip()


def drop_stale_locks(git_dir: Path) -> list[Path]:
    """Remove the lock files a git process leaves when it is killed mid-write (``index.lock``,
    ``HEAD.lock``, ``packed-refs.lock``, ``refs/**/<name>.lock``): every later git command on
    that file fails ("cannot lock ref") until someone deletes them. Only for repositories the
    evolve node owns, when it opens them: a lock then is one its dead predecessor left."""
    git_dir = Path(git_dir)
    names = ("index", "HEAD", "ORIG_HEAD", "FETCH_HEAD", "packed-refs", "config", "shallow")
    locks = [git_dir / f"{n}.lock" for n in names]
    locks += list((git_dir / "refs").rglob("*.lock")) if (git_dir / "refs").is_dir() else []
    dropped = [p for p in locks if p.is_file()]
    for p in dropped:
        p.unlink(missing_ok=True)
    return dropped


class SharedRepo:
    """The bare repository every agent pushes to and fetches from."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | Path, starter: Path = STARTER_DIR) -> SharedRepo:
        """Open ``path``, or make it: a bare repo whose ``main`` holds the starter files."""
        path = Path(path)
        if (path / "HEAD").is_file():
            drop_stale_locks(path)
            return cls(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = path.parent / f".{path.name}.seed"
        shutil.rmtree(seed, ignore_errors=True)
        shutil.copytree(starter, seed, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        git(seed, "init", "-q", "-b", "main")
        git(seed, "add", "-A")
        git(seed, "commit", "-q", "-m", "start: the naive baseline")
        tmp = path.parent / f".{path.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        git(path.parent, "clone", "-q", "--bare", str(seed), str(tmp))
        os.rename(tmp, path)  # atomic: a half-made repository is never seen as ready
        shutil.rmtree(seed, ignore_errors=True)
        return cls(path)

    def rev(self, ref: str) -> str:
        return git(self.path, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")

    def branches(self) -> dict[str, str]:
        out = git(self.path, "for-each-ref", "--format=%(refname:short) %(objectname)",
                  "refs/heads")  # fmt: skip
        return dict(line.split() for line in out.splitlines() if line.strip())

    def log(self, ref: str, n: int = 50) -> list[dict]:
        out = git(self.path, "log", f"-{n}", "--format=%H%x1f%P%x1f%ct%x1f%s", ref)
        rows = []
        for line in out.splitlines():
            sha, parents, t, subject = line.split("\x1f", 3)
            rows.append({"sha": sha, "parents": parents.split(), "time": int(t),
                         "subject": subject})  # fmt: skip
        return rows


class AgentTree:
    """An agent's clone of the shared repository, on its own branch."""

    def __init__(self, shared: SharedRepo, path: Path, branch: str):
        self.shared, self.path, self.branch = shared, Path(path), branch

    @classmethod
    def open(cls, shared: SharedRepo, path: str | Path, branch: str) -> AgentTree:
        """Clone (or reopen) the agent's tree; its branch starts from the shared ``branch``
        if one was published, else from ``main``."""
        path = Path(path)
        tree = cls(shared, path, branch)
        if not (path / ".git").exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(path, ignore_errors=True)
            git(path.parent, "clone", "-q", str(shared.path), str(path))
        tree.repair()
        return tree

    # --- state -------------------------------------------------------------------------
    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD")

    def tree_hash(self, ref: str = "HEAD") -> str:
        """The content hash of a commit's files: equal code evaluates equally."""
        return git(self.path, "rev-parse", f"{ref}^{{tree}}")

    def has_commit(self, sha: str) -> bool:
        return bool(git(self.path, "cat-file", "-t", sha, check=False) == "commit")

    def dirty(self) -> bool:
        return bool(git(self.path, "status", "--porcelain"))

    def diff(self, ref: str = "HEAD") -> str:
        git(self.path, "add", "-A")
        return git(self.path, "diff", "--cached", ref)

    # --- files (paths stay inside the tree) --------------------------------------------
    def resolve(self, rel: str) -> Path:
        p = (self.path / rel).resolve()
        root = self.path.resolve()
        if p != root and root not in p.parents:
            raise ValueError(f"path '{rel}' is outside the agent's tree")
        if ".git" in p.relative_to(root).parts:
            raise ValueError("the .git folder is not the agent's to edit")
        return p

    def read(self, rel: str) -> str:
        return self.resolve(rel).read_text()

    def write(self, rel: str, text: str) -> None:
        p = self.resolve(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    def files(self) -> list[str]:
        out = git(self.path, "ls-files", "--cached", "--others", "--exclude-standard")
        return sorted(f for f in out.splitlines() if f)

    # --- history -----------------------------------------------------------------------
    def commit(self, message: str) -> str:
        """Commit everything in the tree (even an empty change) and return the sha."""
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def snapshot(self) -> str:
        """A commit of the tree as it is now, without touching the branch, the index or the
        files: HEAD when nothing changed, else a commit on top of HEAD kept under
        ``refs/wip/<branch>/`` (what a tool run on work in progress ran, reproducibly)."""
        if not self.dirty():
            return self.head()
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            git(self.path, "read-tree", "HEAD", extra_env=env)
            git(self.path, "add", "-A", extra_env=env)
            tree = git(self.path, "write-tree", extra_env=env)
        sha = git(self.path, "commit-tree", tree, "-p", "HEAD", "-m",
                  f"work in progress on {self.branch} (snapshot for a tool run)")  # fmt: skip
        git(self.path, "update-ref", f"refs/wip/{self.branch}/{sha[:12]}", sha)
        return sha

    def publish(self) -> None:
        """Push the agent's branch to the shared repository (force: it is the agent's own)."""
        git(self.path, "push", "-q", "--force", "origin", f"HEAD:refs/heads/{self.branch}")

    def discard(self, parent: str, experiment_ref: str) -> None:
        """Keep the failed commit under refs/experiments/ in the shared repo, then go back."""
        head = self.head()
        if head != parent:
            git(self.path, "push", "-q", "--force", "origin", f"{head}:{experiment_ref}")
        self.reset_to(parent)

    def reset_to(self, sha: str) -> None:
        git(self.path, "reset", "-q", "--hard", sha)
        git(self.path, "clean", "-qfdx")

    def fetch(self) -> None:
        git(self.path, "fetch", "-q", "--prune", "origin", "+refs/heads/*:refs/remotes/origin/*")

    def adopt(self, sha: str) -> None:
        """Move this agent's branch onto another agent's commit (fetched from shared)."""
        self.fetch()
        if not self.has_commit(sha):
            raise GitError(f"commit {sha} is not in the shared repository")
        self.reset_to(sha)

    def repair(self) -> None:
        """Put the tree back in a usable state after a crash or an agent's damage: abort a
        merge, check out the agent's branch (from shared if published, else main), drop
        uncommitted changes."""
        drop_stale_locks(self.path / ".git")
        git(self.path, "merge", "--abort", check=False)
        self.fetch()
        remote = f"refs/remotes/origin/{self.branch}"
        start = remote if git(self.path, "rev-parse", "--verify", "--quiet", remote,
                              check=False) else "refs/remotes/origin/main"  # fmt: skip
        local = git(self.path, "rev-parse", "--verify", "--quiet", f"refs/heads/{self.branch}",
                    check=False)  # fmt: skip
        if local:
            git(self.path, "checkout", "-q", "-f", self.branch)
        else:
            git(self.path, "checkout", "-q", "-f", "-B", self.branch, start)
        git(self.path, "reset", "-q", "--hard")
        git(self.path, "clean", "-qfdx")
