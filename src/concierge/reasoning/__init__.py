"""Reasoning strategies (ReAct, plan-then-execute, tree-of-thought), their steps, and the router."""
