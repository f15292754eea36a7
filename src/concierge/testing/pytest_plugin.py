"""pytest plugin: real model calls fail unless a test is marked `real_model`.

Enabled with `-p concierge.testing.pytest_plugin` (concierge's own suite does so in
pyproject.toml); user projects can do the same.
"""

from __future__ import annotations

import pytest

from ..llm import guard


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "real_model: allow real model calls (embedded or HTTP) in this test")


@pytest.fixture(autouse=True)
def _concierge_block_real_models(request: pytest.FixtureRequest):
    if request.node.get_closest_marker("real_model") is not None:
        guard.block_real_models(False)
    else:
        guard.block_real_models(True)
    yield
    guard.block_real_models(False)
