"""E: coding-agent hosts, git worktrees, experiment ledger, MTU accounting, morning report."""
