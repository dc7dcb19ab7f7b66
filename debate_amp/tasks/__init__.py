"""Tasks: questions with known answers, a simulated weak human, and the formats the models read and write.

The rest of the package reaches a task only through :class:`~debate_amp.tasks.base.Task` and this registry; a task
is chosen by ``task.name`` and built from its own recipe section (``config.TASK_CONFIGS``).
"""

from __future__ import annotations

from typing import Any

from debate_amp.tasks.add import AddTask
from debate_amp.tasks.base import Example, Task, TaskQuestion
from debate_amp.tasks.dataset import DatasetTask
from debate_amp.tasks.perm import PermTask

TASKS: dict[str, type[Task]] = {"perm": PermTask, "add": AddTask, "dataset": DatasetTask}
"""Each task's class by name; ``TASKS[name].from_config(section)`` builds one from its recipe section."""

__all__ = ["TASKS", "Example", "Task", "TaskQuestion", "make_task", "task_named"]


def make_task(cfg: Any) -> Task:
    """The task a recipe names (``cfg.task.name``), built from its section; ``cfg`` is a Config or the section."""
    section = getattr(cfg, "task", cfg)
    return TASKS[section.name].from_config(section)


def task_named(name: str) -> Task:
    """A task with its default settings (enough to read and score any of its questions, as transcripts need).
    Raises ValueError for a name that is not registered."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; registered: {', '.join(TASKS)}")
    return TASKS[name]()
