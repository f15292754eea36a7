"""A small built-in shop (three tools) for the offline demo and `concierge chat`."""

from .agent import DEMO_CONVERSATION, DemoShop, make_demo_agent

__all__ = ["DEMO_CONVERSATION", "DemoShop", "make_demo_agent"]
