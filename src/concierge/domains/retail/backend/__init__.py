"""The retail store as an HTTP service: tau2's retail operations with every rule enforced server-side."""

from .app import create_app, main
from .errors import RuleViolation

__all__ = ["RuleViolation", "create_app", "main"]
