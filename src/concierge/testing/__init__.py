"""Test doubles shipped with the library: scripted models, test services and helpers for tests."""

from .models import EchoModel, FunctionModel, ModelRequest, ScriptedModel, Step, call
from .services import PaymentService, ServiceProcess

__all__ = ["EchoModel", "FunctionModel", "ModelRequest", "PaymentService", "ScriptedModel", "ServiceProcess", "Step", "call"]
