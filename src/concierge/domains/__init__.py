"""Reference businesses: each a backend, the agent's tools over it, and its policy."""
