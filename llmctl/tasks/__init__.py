"""The task registry: recipe `task:` name -> Task class. Explicit on purpose, no plug-in magic."""

from llmctl.tasks.classification import ClassificationTask
from llmctl.tasks.qa import QATask

TASKS = {
    "classification": ClassificationTask,
    "qa": QATask,
}
