"""Agent backends: the offline agent (no model) and the OpenAI-compatible LLM agent."""
