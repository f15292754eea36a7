"""Memory in a turn: what earlier conversations left about this customer, in the system message.

Recalled once per turn (so the system message, and its token count, stay the same for every model
call of the turn), in its own section that says the current conversation wins over it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.messages import Message
from ..core.principal import Principal
from ..memory import Memory
from ..tools.tool import CUSTOMER_KEY
from .result import TurnState
from .sessions.base import Session

HEADING = ("What we remember about this customer from earlier conversations (the current conversation "
           "takes precedence over it):")


def memory_user(principal: Principal, session_state: Mapping[str, Any] | None = None) -> str | None:
    """Whom memory is about: the business's customer when the caller is one or the session was bound
    to one (an identity check during the chat), else a caller in the customer role; None for anyone
    else (a service or an operator is not remembered)."""
    bound = (session_state or {}).get(CUSTOMER_KEY)
    if principal.customer_id:
        return principal.customer_id
    if isinstance(bound, str) and bound:
        return bound
    return principal.user_id if principal.role == "customer" else None


async def recalled_instructions(memory: Memory, instructions: str, session: Session, state: TurnState,
                                message: str, budget_tokens: int) -> str | None:
    """The instructions plus the recalled memories, or None when nothing is recalled."""
    user = memory_user(state.principal, session.state)
    if user is None:
        return None
    current: list[Message] = [*session.history, *state.messages]
    lines = await memory.context_lines(state.principal.tenant, user, message, budget_tokens,
                                       conversation_id=session.id, current_conversation=current)
    if not lines:
        return None
    return instructions + "\n\n" + HEADING + "\n" + "\n".join(f"- {line}" for line in lines)
