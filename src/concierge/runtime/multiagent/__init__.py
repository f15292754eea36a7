"""Multi-agent: a supervisor delegates tasks to specialists, each a handoff tool with least privilege."""

from .handoff import Handoff, HandoffRecord, supervisor_agent
from .specialist import Specialist

__all__ = ["Handoff", "HandoffRecord", "Specialist", "supervisor_agent"]
