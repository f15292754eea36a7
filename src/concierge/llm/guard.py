"""A switch that lets a test suite forbid real model calls.

Real providers call `check_real_model_allowed()` before any network or inference work; the
pytest plugin in `concierge.testing` turns the switch on for every test not marked
`real_model`, so an accidental real call fails loudly instead of passing slowly or flakily.
"""

from __future__ import annotations

from ..core.errors import ModelUnavailableError

_blocked = False


def block_real_models(blocked: bool = True) -> None:
    global _blocked
    _blocked = blocked


def check_real_model_allowed(provider: str) -> None:
    if _blocked:
        raise ModelUnavailableError(
            f"a real model call ({provider}) was attempted in a test that forbids it",
            hint="use concierge.testing.ScriptedModel, or mark the test with @pytest.mark.real_model",
        )
