"""PI: policy interface, improvement recipes and sandboxed loading of agent-written policy code."""
