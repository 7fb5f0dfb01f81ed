"""The task registry: recipe `task:` name -> Task class. Explicit on purpose, no plug-in magic."""

from llmctl.tasks.classification import ClassificationTask
from llmctl.tasks.ner import NerTask
from llmctl.tasks.qa import QATask

TASKS = {
    "classification": ClassificationTask,
    "ner": NerTask,
    "qa": QATask,
}
