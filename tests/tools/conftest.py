"""The fault matrix's counters, printed in the terminal summary so every run reports them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest

_TALLY = pytest.StashKey["Tally"]()


@dataclass
class Tally:
    shape: str = ""
    cells: int = 0
    actions: int = 0
    statuses: Counter = field(default_factory=Counter)
    double_effects: int = 0
    lost_effects: int = 0
    unknown_surfaced: int = 0
    unknown_silent: int = 0


@pytest.fixture(scope="session")
def tally(request) -> Tally:
    return request.config.stash.setdefault(_TALLY, Tally())


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    result = config.stash.get(_TALLY, None)
    if result is None or not result.cells:
        return
    terminalreporter.section("fault matrix")
    terminalreporter.write_line(f"{result.cells} cells ({result.shape}), {result.actions} ledgered actions")
    terminalreporter.write_line(f"ledger outcomes: {dict(sorted(result.statuses.items()))}")
    terminalreporter.write_line(
        f"double effects = {result.double_effects}, lost effects = {result.lost_effects}, "
        f"unknown told to the user = {result.unknown_surfaced}, unknown not told = {result.unknown_silent}"
    )
