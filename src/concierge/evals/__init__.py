"""Evaluation: run agents against tasks, score them, and gate releases on regressions."""
