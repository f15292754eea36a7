"""Memory in a turn: what earlier conversations left about this customer, in the system message.

Recalled once per turn (so the system message, and its token count, stay the same for every model
call of the turn), in its own section that says the current conversation wins over it.
"""

from __future__ import annotations

from ..core.messages import Message
from ..core.principal import Principal
from ..memory import Memory
from .result import TurnState
from .sessions.base import Session

HEADING = ("What we remember about this customer from earlier conversations (the current conversation "
           "takes precedence over it):")


def memory_user(principal: Principal) -> str:
    """Whom memory is about: the business's customer when the session is bound to one, else the caller."""
    return principal.customer_id or principal.user_id


async def recalled_instructions(memory: Memory, instructions: str, session: Session, state: TurnState,
                                message: str, budget_tokens: int) -> str | None:
    """The instructions plus the recalled memories, or None when nothing is recalled."""
    current: list[Message] = [*session.history, *state.messages]
    lines = await memory.context_lines(state.principal.tenant, memory_user(state.principal), message, budget_tokens,
                                       conversation_id=session.id, current_conversation=current)
    if not lines:
        return None
    return instructions + "\n\n" + HEADING + "\n" + "\n".join(f"- {line}" for line in lines)
