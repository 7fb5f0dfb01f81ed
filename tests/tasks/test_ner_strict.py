"""The NER task reports strict IOB2 entity scores (README "NER"): a prediction that opens an
entity with I- counts for seqeval's lenient mode but not for the task. No model: crafted logits
through NerTask.compute_metrics, with the real tiny BERT tokenizer."""

import numpy as np
import pytest

from llmctl import metrics
from llmctl.tasks.ner import NerData, NerTask

TRAIN = "Alice B-PER\nSmith I-PER\nworks O\nfor O\nAcme B-ORG\nCorp I-ORG\nin O\nParis B-LOC\n. O\n\n"
VALID = TRAIN + "Bob B-PER\nwas O\nborn O\nin O\nTokyo B-LOC\n. O\n\n"
# The tags the crafted logits favour: "Alice" opens its entity with I-PER.
PREDICTED = [["I-PER", "I-PER", "O", "O", "B-ORG", "I-ORG", "O", "B-LOC", "O"], ["B-PER", "O", "O", "O", "B-LOC", "O"]]


def task_and_logits(tmp_path, tiny_models, **data):
    from llmctl.config.schema import ModelConfig
    from llmctl.models.load import load_tokenizer

    (tmp_path / "train.txt").write_text(TRAIN)
    (tmp_path / "valid.txt").write_text(VALID)
    task = NerTask(NerData(**data))
    task = task.with_labels(task.fit(task.load_split("train", str(tmp_path / "train.txt"))))
    split = task.load_split("validation", str(tmp_path / "valid.txt"))
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_models["bert"])), **task.tokenizer_kwargs())
    features = task.featurize(split, tokenizer)
    kept = {"logits": []}
    for f, ids in enumerate(features.columns["input_ids"]):
        z = np.zeros((len(ids), len(task.labels.names)), dtype=np.float32)
        example, first = features.meta["example"][f], features.meta["first_word"][f]
        for k, (a, b) in enumerate(features.meta["spans"][f]):
            z[a:b, task.labels.names.index(PREDICTED[example][first + k])] = 8.0
        kept["logits"].append(z)
    return task, kept, features, split


def test_task_reports_the_strict_score_where_lenient_differs(tmp_path, tiny_models):
    task, kept, features, split = task_and_logits(tmp_path, tiny_models, constrained_decoding=False)
    got = task.compute_metrics(kept, features, split)
    references = split.tags
    seqeval = metrics.load("seqeval")
    strict = seqeval.compute(predictions=PREDICTED, references=references)
    lenient = seqeval.compute(predictions=PREDICTED, references=references, mode=None)
    # 5 gold entities; strict finds 4 of them (no PER from I-PER I-PER), lenient all 5.
    assert (strict["precision"], strict["recall"], strict["f1"]) == pytest.approx((1.0, 0.8, 8 / 9))
    assert lenient["f1"] == pytest.approx(1.0)
    assert got["f1"] == pytest.approx(strict["f1"]) and got["recall"] == pytest.approx(0.8)
    assert got["PER_recall"] == pytest.approx(0.5) and got["PER_number"] == 2
    assert got["accuracy"] == pytest.approx(14 / 15)  # per word: only "Alice" is wrong


def test_constrained_decoding_repairs_the_opening_i_tag(tmp_path, tiny_models):
    """The default decoding picks the most likely valid sequence: B-PER I-PER for Alice Smith."""
    task, kept, features, split = task_and_logits(tmp_path, tiny_models)
    got = task.compute_metrics(kept, features, split)
    assert got["f1"] == pytest.approx(1.0) and got["accuracy"] == pytest.approx(1.0)
