"""Evaluation tasks in tau2-bench's format, read and validated with errors that name file, task and field.

concierge's own task files use the same fields, plus two optional ones: `user_turns`, the fixed
lines of a scripted user (deterministic runs), and env assertions that call the domain's own
assertion functions. A file is a JSON list of tasks, or an object with a `tasks` list.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..core.errors import ValidationError

RewardType = Literal["DB", "ENV_ASSERTION", "NL_ASSERTION", "ACTION", "COMMUNICATE"]
REWARD_TYPES: tuple[str, ...] = ("DB", "ENV_ASSERTION", "NL_ASSERTION", "ACTION", "COMMUNICATE")


class _Model(BaseModel):
    # tau2 files carry fields we do not use (e.g. "issues"); they are ignored, not refused.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Action(_Model):
    """One expected tool call; `compare_args` limits which arguments must match (None: all)."""

    action_id: str
    requestor: Literal["assistant", "user"] = "assistant"
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)
    info: str | None = None
    compare_args: list[str] | None = None

    @field_validator("requestor", mode="before")
    @classmethod
    def _default_requestor(cls, value: Any) -> Any:
        return "assistant" if value is None else value


class EnvAssertion(_Model):
    """A check on the final environment: the domain's function `func_name(**arguments)` == `assert_value`."""

    env_type: Literal["assistant", "user"] = "assistant"
    func_name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)
    assert_value: bool = True
    message: str | None = None


class EvaluationCriteria(_Model):
    actions: list[Action] = Field(default_factory=list)
    env_assertions: list[EnvAssertion] = Field(default_factory=list)
    communicate_info: list[str] = Field(default_factory=list)
    nl_assertions: list[str] = Field(default_factory=list)
    reward_basis: list[RewardType] = Field(default_factory=lambda: ["DB", "COMMUNICATE"])

    @field_validator("actions", "env_assertions", "communicate_info", "nl_assertions", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("reward_basis")
    @classmethod
    def _non_empty_basis(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("reward_basis is empty: name at least one of " + ", ".join(REWARD_TYPES))
        return value


class Instructions(_Model):
    domain: str | None = None
    reason_for_call: str = ""
    known_info: str | None = None
    unknown_info: str | None = None
    task_instructions: str | None = None


class UserScenario(_Model):
    persona: str | None = None
    instructions: Instructions | str

    def describe(self) -> str:
        """The scenario as prose for a user simulator's instructions."""
        if isinstance(self.instructions, str):
            parts = [self.instructions]
        else:
            i = self.instructions
            parts = [f"Reason for your call: {i.reason_for_call}"]
            parts += [f"What you know: {i.known_info}"] if i.known_info else []
            parts += [f"What you do not know: {i.unknown_info}"] if i.unknown_info else []
            parts += [f"How to behave: {i.task_instructions}"] if i.task_instructions else []
        return "\n".join(([f"Persona: {self.persona}"] if self.persona else []) + parts)


class InitialState(_Model):
    """tau2's initial state: data merged into the domain database, and actions run before the talk."""

    initialization_data: dict[str, Any] | None = None
    initialization_actions: list[Action] = Field(default_factory=list)
    message_history: list[Any] | None = None

    @field_validator("initialization_actions", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("message_history")
    @classmethod
    def _no_history(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise ValueError("tasks that start from a message history are not supported yet")
        return value

    @property
    def agent_data(self) -> dict[str, Any]:
        return dict((self.initialization_data or {}).get("agent_data") or {})


class Task(_Model):
    id: str = Field(min_length=1)
    description: dict[str, Any] | str | None = None
    user_scenario: UserScenario
    initial_state: InitialState | None = None
    evaluation_criteria: EvaluationCriteria = Field(default_factory=EvaluationCriteria)
    # concierge: the scripted user's lines, in order (the conversation ends after the last one).
    user_turns: list[str] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @property
    def opening(self) -> str:
        """What the customer says first when no scripted lines are given."""
        instructions = self.user_scenario.instructions
        return instructions if isinstance(instructions, str) else instructions.reason_for_call


def _where(error: dict[str, Any]) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(task)"


def parse_tasks(data: Any, source: str = "<tasks>") -> list[Task]:
    """Validate already-loaded JSON; every problem names the source, the task id and the field."""
    items = data.get("tasks") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValidationError(f"{source}: expected a list of tasks (or an object with a 'tasks' list)")
    tasks: list[Task] = []
    seen: set[str] = set()
    for position, item in enumerate(items):
        label = f"task {item.get('id')!r}" if isinstance(item, dict) and "id" in item else f"task #{position}"
        if not isinstance(item, dict):
            raise ValidationError(f"{source}: {label}: expected an object, got {type(item).__name__}")
        try:
            task = Task.model_validate(item)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise ValidationError(f"{source}: {label}: field {_where(first)}: {first['msg']}{more}") from None
        if task.id in seen:
            raise ValidationError(f"{source}: {label}: duplicate task id")
        seen.add(task.id)
        tasks.append(task)
    if not tasks:
        raise ValidationError(f"{source}: no tasks in the file")
    return tasks


def load_tasks(path: Path | str) -> list[Task]:
    """Read a task file (tau2's `tasks*.json` or concierge's own)."""
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"task file not found: {path}", hint="pass the path of a tasks JSON file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{path}: cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path}: not valid JSON: {exc}") from exc
    return parse_tasks(data, str(path))


def select_tasks(tasks: list[Task], ids: list[str] | None = None, limit: int | None = None) -> list[Task]:
    """The tasks named by `ids` (in file order), or the first `limit`; unknown ids are an error."""
    if ids:
        known = {t.id for t in tasks}
        missing = [i for i in ids if i not in known]
        if missing:
            raise ValidationError(f"unknown task ids: {', '.join(missing)}")
        tasks = [t for t in tasks if t.id in set(ids)]
    if limit is not None:
        if limit < 1:
            raise ValidationError(f"limit must be at least 1, got {limit}")
        tasks = tasks[:limit]
    return tasks
