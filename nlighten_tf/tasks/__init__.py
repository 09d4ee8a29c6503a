"""Task objects: one per kind of model (classification, detection, segmentation), looked up by
the model's registered task (`nlighten_tf.models.registry.ModelInfo.task`) with `for_model`.

See `base.Task` for what a task answers. Adding a task: a `Task` subclass in its own module and
one entry in `TASKS`.
"""

from __future__ import annotations

from nlighten_tf.tasks.base import Task, TaskError
from nlighten_tf.tasks.classification import ClassificationTask
from nlighten_tf.tasks.detection import DetectionTask
from nlighten_tf.tasks.segmentation import SegmentationTask

# Registry task name -> task class.
TASKS: dict[str, type[Task]] = {task.name: task for task in (ClassificationTask, DetectionTask, SegmentationTask)}

__all__ = ["TASKS", "Task", "TaskError", "for_model", "get"]


def get(name: str) -> Task:
    """The task object of a registry task name; TaskError for a task recipes cannot run."""
    try:
        return TASKS[name]()
    except KeyError:
        raise TaskError(f"task {name!r} has no recipe support; supported: {', '.join(TASKS)}") from None


def for_model(model_name: str) -> Task:
    """The task object of a registered model (ValueError for an unknown model name)."""
    from nlighten_tf.models import registry

    task = registry.info(model_name).task
    try:
        return get(task)
    except TaskError:
        raise TaskError(f"{model_name} is a {task} model; recipes run {', '.join(TASKS)} models") from None
