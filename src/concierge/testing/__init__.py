"""Test doubles shipped with the library: scripted models and helpers for tests."""

from .models import FunctionModel, ModelRequest, ScriptedModel, Step, call

__all__ = ["FunctionModel", "ModelRequest", "ScriptedModel", "Step", "call"]
