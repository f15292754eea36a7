"""The red-team suite: adversarial cases against the retail agent, measured in the store's database.

`generate_cases()` builds the cases (deterministic), `CompromisedModel` obeys every attack,
`RedTeamRunner`/`run_redteam` run them on the real runtime with the API-layer guarantees (scopes,
acting-user header, store ownership checks, policy caps) and count what got through. See
docs/redteam.md.
"""

from .cases import CLASSES, Case, Plant, generate_cases, sample, suite_store
from .compromised import CompromisedModel, demands
from .runner import SUITE_CAPS, WEAKENINGS, CaseResult, RedTeamReport, RedTeamRunner, run_redteam, summary

__all__ = [
    "CLASSES", "SUITE_CAPS", "WEAKENINGS", "Case", "CaseResult", "CompromisedModel", "Plant", "RedTeamReport",
    "RedTeamRunner", "demands", "generate_cases", "run_redteam", "sample", "suite_store", "summary",
]
