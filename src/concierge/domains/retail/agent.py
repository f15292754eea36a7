"""The retail agent: the store's policy as instructions, tau2's tools, writes behind confirmation.

The policy is data: the store's own `policy.md` by default, or the one in a tau2-format domain
folder when running tau2 tasks. The tools reach the store over HTTP (in-process through ASGI for
speed, or a URL), and go through the transactional executor the runtime is given.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import httpx

from ...llm.base import ChatModel, ModelSettings
from ...runtime.agent import Agent, Limits
from ...tools.tool import Tool
from .store.tau2_io import read_policy
from .tools import WRITE_SCOPES, retail_tools


def store_policy(folder: Path | None = None) -> str:
    """The policy in `folder` (a tau2-format domain folder), else concierge's own store policy."""
    if folder is not None:
        return read_policy(folder)
    return resources.files(__package__).joinpath("policy.md").read_text(encoding="utf-8")


def make_retail_agent(model: ChatModel, client: httpx.AsyncClient, *, policy: str | None = None,
                      confirm: bool = True, limits: Limits | None = None,
                      model_settings: ModelSettings | None = None, knowledge: Tool | None = None) -> Agent:
    """A retail agent whose tools call the store behind `client`.

    The end user's principal needs the `retail:write` scope for changes; the user id the tools
    act as is the one a lookup tool found in this session, never one the model names.
    `knowledge` adds a `search_knowledge_base` tool (see `concierge.retrieval.tool`).
    """
    return Agent(
        name="retail",
        instructions=policy if policy is not None else store_policy(),
        model=model,
        tools=[*retail_tools(client, confirm=confirm), *([knowledge] if knowledge is not None else [])],
        limits=limits or Limits(max_steps=12, timeout_s=300),
        model_settings=model_settings,
    )


__all__ = ["WRITE_SCOPES", "make_retail_agent", "store_policy"]
