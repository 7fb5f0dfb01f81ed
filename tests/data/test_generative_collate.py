"""QA, seq2seq and causal-LM batches come from the one shared collator (llmctl.data.collate) and
are, tensor for tensor, the batches each task's own collate made before: those collates are kept
below as the reference, and both are fed the same real feature rows, as lists (just tokenized) and
as columnar arrays (what the feature cache gives back), for every model family each task takes."""

import pytest

from helpers import write_jsonl
from qa_helpers import make_articles, write_squad


# -- the reference: each task's collate as it was before the shared collator --------------------
def _pad_stack(rows, key, pad_value, left=False):
    import torch

    width = max(len(r[key]) for r in rows)
    out = torch.full((len(rows), width), pad_value, dtype=torch.long)
    for i, r in enumerate(rows):
        seq = r[key]
        if left:
            out[i, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
        else:
            out[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


def qa_reference(rows, tokenizer):
    import torch

    left = tokenizer.padding_side == "left"
    batch = {"input_ids": _pad_stack(rows, "input_ids", tokenizer.pad_token_id, left=left)}
    width = batch["input_ids"].shape[1]
    lengths = torch.tensor([len(r["input_ids"]) for r in rows])
    positions = torch.arange(width)[None, :]
    if left:
        batch["attention_mask"] = (positions >= (width - lengths)[:, None]).long()
    else:
        batch["attention_mask"] = (positions < lengths[:, None]).long()
    if "token_type_ids" in rows[0]:
        batch["token_type_ids"] = _pad_stack(rows, "token_type_ids", 0, left=left)
    if "start_positions" in rows[0]:
        shift = (width - lengths) if left else torch.zeros_like(lengths)
        batch["start_positions"] = torch.tensor([r["start_positions"] for r in rows]) + shift
        batch["end_positions"] = torch.tensor([r["end_positions"] for r in rows]) + shift
    batch["index"] = torch.tensor([r["index"] for r in rows])
    return batch


def seq2seq_reference(rows, tokenizer):
    import torch

    ids = _pad_stack(rows, "input_ids", tokenizer.pad_token_id)
    lengths = torch.tensor([len(r["input_ids"]) for r in rows])
    batch = {"input_ids": ids, "attention_mask": (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()}
    if "labels" in rows[0]:
        batch["labels"] = _pad_stack(rows, "labels", -100)
    batch["index"] = torch.tensor([r["index"] for r in rows])
    return batch


def causal_lm_reference(rows, tokenizer):
    import torch

    left = "labels" not in rows[0]
    ids = _pad_stack(rows, "input_ids", tokenizer.pad_token_id, left=left)
    lengths = torch.tensor([len(r["input_ids"]) for r in rows])
    positions = torch.arange(ids.shape[1])[None, :]
    mask = positions >= ids.shape[1] - lengths[:, None] if left else positions < lengths[:, None]
    batch = {"input_ids": ids, "attention_mask": mask.long()}
    if not left:
        batch["labels"] = _pad_stack(rows, "labels", -100)
    if "example_starts" in rows[0]:
        _keep_packed_examples_apart(batch, rows)
    batch["index"] = torch.tensor([r["index"] for r in rows])
    return batch


def _keep_packed_examples_apart(batch, rows):
    """Packed blocks: positions counted from each example's start, each example (and the padding,
    as one more) attending causally to itself only, and no label for an example's first token."""
    import torch

    width = batch["input_ids"].shape[1]
    positions = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.full((len(rows), 1, width, width), torch.finfo(torch.float32).min)
    for i, row in enumerate(rows):
        length = len(row["input_ids"])
        edges = [0, *(int(s) for s in row["example_starts"]), length, width]
        for start, end in zip(edges, edges[1:]):
            positions[i, start:end] = torch.arange(end - start)
            for query in range(start, end):
                mask[i, 0, query, start : query + 1] = 0
            if 0 < start < length:
                batch["labels"][i, start] = -100
    batch["position_ids"], batch["attention_mask"] = positions, mask


# -- real features ----------------------------------------------------------------------------------
def tokenizer_of(model, padding_side=None, **kwargs):
    from llmctl.config.schema import ModelConfig
    from llmctl.models.load import load_tokenizer

    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(model)), **kwargs)
    if padding_side:
        tokenizer.padding_side = padding_side
    return tokenizer


def batches(features, size=3):
    """Mixed-length batches in file order, and one of every row sorted by length as evaluation makes them."""
    from llmctl.train.batching import eval_batches

    order = list(range(len(features)))
    return [order[i:i + size] for i in range(0, len(order), size)] + eval_batches(features.lengths, len(order))


def cached(features):
    """The features as the feature cache gives them back: columnar arrays, not lists."""
    from llmctl.data.store import to_columnar
    from llmctl.data.features import Features

    return Features({k: to_columnar(v) for k, v in features.columns.items()}, features.lengths, features.meta)


def assert_same_batches(task, features, tokenizer, reference):
    import torch

    for form in (features, cached(features)):
        for ids in batches(form):
            rows = form.rows(ids)
            new, old = task.collate(rows, tokenizer), reference(rows, tokenizer)
            assert set(new) == set(old)
            for name in old:
                assert new[name].dtype == old[name].dtype, name
                assert torch.equal(new[name], old[name]), (name, ids)


@pytest.mark.parametrize("family, side", [("bert", None), ("gpt2", "right"), ("gpt2", "left"), ("t5", None)])
def test_qa_batches_are_the_ones_its_own_collate_made(family, side, tiny_models, tmp_path):
    from llmctl.tasks.qa import QAData, QATask

    path = write_squad(tmp_path / "train.json", make_articles(1, 2, 4, seed=3))
    task = QATask(QAData(max_length=40, doc_stride=10))  # long contexts: several windows of unequal length
    tokenizer = tokenizer_of(tiny_models[family], side, **task.tokenizer_kwargs())
    for role in ("train", "validation"):  # start/end positions are batch columns only in training
        features = task.featurize(task.load_split(role, str(path)), tokenizer)
        assert ("start_positions" in features.columns) == (role == "train")
        assert_same_batches(task, features, tokenizer, qa_reference)
    predict = task.predict_split([{"question": "Where was she born?", "context": "She was born in Paris."},
                                  {"question": "Who?", "context": "Alice."}], "stdin")
    assert_same_batches(task, task.featurize(predict, tokenizer), tokenizer, qa_reference)


def test_seq2seq_batches_are_the_ones_its_own_collate_made(tiny_models, tmp_path):
    from llmctl.tasks.seq2seq import Seq2SeqData, Seq2SeqTask

    rows = [{"source": "a great film " * (i % 4 + 1), "target": "positive " * (i % 3 + 1)} for i in range(8)]
    path = write_jsonl(tmp_path / "s.jsonl", rows)
    task = Seq2SeqTask(Seq2SeqData(train=str(path), max_length=16, max_target_length=4, source_prefix="sst2: "))
    tokenizer = tokenizer_of(tiny_models["t5"], **task.tokenizer_kwargs())
    features = task.featurize(task.load_split("train", str(path)), tokenizer)
    assert_same_batches(task, features, tokenizer, seq2seq_reference)
    predict = task.predict_split([{"source": "dull"}, {"text": "a long and very dull film indeed"}], "stdin")
    assert_same_batches(task, task.featurize(predict, tokenizer), tokenizer, seq2seq_reference)


@pytest.mark.parametrize("data", [
    dict(prompt_column="prompt", completion_column="completion", max_length=12),  # truncated, -100 prompts
    dict(max_length=12),                                                           # plain text
    dict(packing=True, max_length=16),                                             # packed blocks
])
def test_causal_lm_batches_are_the_ones_its_own_collate_made(data, tiny_models, tmp_path):
    from llmctl.tasks.causal_lm import CausalLMData, CausalLMTask

    rows = [{"text": "the film was " + "very " * i + "good", "prompt": f"Review {i}:" + " dull" * (i % 3),
             "completion": " positive" * (i % 2 + 1)} for i in range(9)]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    task = CausalLMTask(CausalLMData(train=str(path), **data))
    tokenizer = tokenizer_of(tiny_models["gpt2"], **task.tokenizer_kwargs())
    for role in ("train", "validation"):
        features = task.featurize(task.load_split(role, str(path)), tokenizer)
        assert_same_batches(task, features, tokenizer, causal_lm_reference)
    # Prompts to continue have no labels: padded on the left, so generation carries on from real tokens.
    predict = task.predict_split([{"prompt": "The movie was"}, {"text": "I really loved this film, but the"}], "-")
    features = task.featurize(predict, tokenizer)
    assert_same_batches(task, features, tokenizer, causal_lm_reference)
    batch = task.collate(features.rows([0, 1]), tokenizer)
    assert batch["attention_mask"][:, -1].tolist() == [1, 1] and batch["attention_mask"][0, 0] == 0


def test_streamed_causal_lm_file_batches_are_the_ones_its_own_collate_made(tiny_models, tmp_path, monkeypatch):
    """A training file read a chunk at a time: plain text's labels are its input ids, the same array."""
    from llmctl.tasks import causal_lm_file
    from llmctl.tasks.causal_lm import CausalLMData, CausalLMTask
    from llmctl.tasks.causal_lm_file import LMFileSplit

    monkeypatch.setattr(causal_lm_file, "CHUNK_ROWS", 4)
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "a film " * (i % 5 + 1)} for i in range(11)])
    task = CausalLMTask(CausalLMData(train=str(path), max_length=8))
    split = task.load_split("train", str(path))
    assert isinstance(split, LMFileSplit)
    tokenizer = tokenizer_of(tiny_models["gpt2"])
    features = task.featurize(split, tokenizer)
    assert features.columns["labels"] is features.columns["input_ids"]
    assert_same_batches(task, features, tokenizer, causal_lm_reference)
