"""Query rewriting: a model turns a customer's message into a precise search query.

"what's the deal with returns?" searches worse than "return policy window". Optional, because it
costs a model call per search: off by default, and not worth it with the embedded 135M model.
A rewrite that fails or comes back empty falls back to the customer's own words.
"""

from __future__ import annotations

import logging

from ..core.errors import ConciergeError
from ..core.messages import SystemMessage, UserMessage
from ..llm.base import ChatModel, ModelSettings

logger = logging.getLogger(__name__)
MAX_QUERY_WORDS = 16
_PROMPT = ("Rewrite the customer's message as a short search query for a help-centre knowledge base: the topic "
           "and the specific terms only, at most 12 words, no punctuation, no answer. Reply with the query only.")


class QueryRewriter:
    def __init__(self, model: ChatModel) -> None:
        self.model = model

    async def rewrite(self, message: str) -> str:
        try:
            response = await self.model.complete([SystemMessage(_PROMPT), UserMessage(message)],
                                                 settings=ModelSettings(temperature=0.0, max_tokens=40))
        except ConciergeError as exc:  # the search still runs, on the customer's words
            logger.warning("query rewrite failed, searching the message as written: %s", exc)
            return message
        words = (response.message.content or "").replace("\n", " ").split()
        return " ".join(words[:MAX_QUERY_WORDS]) or message
