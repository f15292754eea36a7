"""`search_knowledge_base`: the agent's way into the tenant's knowledge base, grounded or not at all.

The tenant is the session principal's, never an argument the model writes. When the grounding
check fails the tool does not hand over weak passages: it tells the model to say it does not
know and to offer a human, which is what the customer hears instead of a guess.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..core.events import EventType
from ..tools.tool import Tool, ToolContext, make_tool
from .knowledge_base import KnowledgeBase
from .rewrite import QueryRewriter

NOT_GROUNDED = ("The knowledge base has no reliable answer to this. Tell the customer plainly that you do not "
                "know, and offer to transfer them to a human agent. Do not guess.")
GROUNDED = "Answer only from these passages, and cite each one you use in brackets, e.g. [{example}]."
STAFF_ROLES = frozenset({"agent", "operator", "admin"})


def knowledge_tool(kb: KnowledgeBase, *, k: int = 3, rewriter: QueryRewriter | None = None) -> Tool:
    """The tool over `kb`; with a `rewriter`, a model first turns the query into precise search terms."""

    async def search_knowledge_base(query: str, context: ToolContext) -> dict[str, Any]:
        """Search the company's help articles and policies for the customer's question.

        Args:
            query: The question to look up, in a few precise words, e.g. 'return window electronics'.
        """
        principal = context.principal
        visibility = frozenset({"public", "internal"}) if principal.role in STAFF_ROLES else frozenset({"public"})
        if rewriter is not None:
            query = await rewriter.rewrite(query)
        if context.emit is not None:
            await context.emit(EventType.RETRIEVAL_QUERY, query=query)
        result = await asyncio.to_thread(kb.search, query, principal.tenant, k=k, visibility=visibility)
        if context.emit is not None:
            await context.emit(EventType.RETRIEVAL_RESULT, grounded=result.grounding.grounded,
                               confidence=round(result.grounding.confidence, 3), citations=result.citations)
        if not result.grounding.grounded:
            return {"grounded": False, "confidence": round(result.grounding.confidence, 3),
                    "instruction": NOT_GROUNDED}
        passages = [{"cite": h.citation, "heading": h.heading, "text": h.text} for h in result.hits]
        return {"grounded": True, "confidence": round(result.grounding.confidence, 3), "passages": passages,
                "cite": [p["cite"] for p in passages],  # the runtime shows these if the reply does not
                "instruction": GROUNDED.format(example=passages[0]["cite"])}

    return make_tool(search_knowledge_base, effect="read", essential_fields=("grounded", "instruction", "passages", "cite"))
