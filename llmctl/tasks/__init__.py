"""The task registry: recipe `task:` name -> Task class. Explicit on purpose, no plug-in magic."""

from llmctl.tasks.causal_lm import CausalLMTask
from llmctl.tasks.classification import ClassificationTask
from llmctl.tasks.denoising import DenoisingTask
from llmctl.tasks.embedding import EmbeddingTask
from llmctl.tasks.masked_lm import MaskedLMTask
from llmctl.tasks.multiple_choice import MultipleChoiceTask
from llmctl.tasks.ner import NerTask
from llmctl.tasks.preference import PreferenceTask
from llmctl.tasks.qa import QATask
from llmctl.tasks.seq2seq import Seq2SeqTask

TASKS = {
    "classification": ClassificationTask,
    "ner": NerTask,
    "qa": QATask,
    "seq2seq": Seq2SeqTask,
    "causal-lm": CausalLMTask,
    "masked-lm": MaskedLMTask,
    "multiple-choice": MultipleChoiceTask,
    "embedding": EmbeddingTask,
    "denoising": DenoisingTask,
    "preference": PreferenceTask,
}
