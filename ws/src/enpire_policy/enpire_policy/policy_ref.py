"""Which policy to run or train, as one typed value between packages (enpire_msgs/PolicyRef
on the wire, a dict in JSON and the ledger)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class PolicyRef:
    name: str = ""  # built-in policy name, or a label for agent code
    agent_id: str = ""  # agent that owns the code ("" for built-ins)
    repo_path: str = ""  # git worktree / repository holding the policy code
    commit: str = ""  # git commit (sha or ref); "" = working tree as is
    module: str = ""  # module file inside repo_path, e.g. "policy/pusht_policy.py"
    artifact: str = ""  # trained artifact directory ("" = none)

    @classmethod
    def from_any(cls, ref) -> PolicyRef:
        """From a PolicyRef, a dict (JSON, manifests) or an enpire_msgs/PolicyRef message."""
        if isinstance(ref, PolicyRef):
            return ref
        names = [f.name for f in fields(cls)]
        if isinstance(ref, dict):
            return cls(**{k: str(ref.get(k) or "") for k in names})
        return cls(**{k: str(getattr(ref, k, "") or "") for k in names})

    @classmethod
    def parse(cls, text: str) -> PolicyRef:
        """A built-in name, or an artifact directory (anything with a '/')."""
        return cls(artifact=text) if "/" in text else cls(name=text)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_msg(self):
        from enpire_msgs.msg import PolicyRef as PolicyRefMsg

        return PolicyRefMsg(**self.to_dict())

    @property
    def label(self) -> str:
        return self.name or self.artifact or self.repo_path or "?"

    def key(self) -> tuple:
        """Equal keys: the same code and artifact (a policy worker can be reused)."""
        return (self.repo_path, self.commit, self.module, self.artifact, self.name)
