"""QA, seq2seq and causal-LM keep nothing on the task object: what featurize learns travels in the
features (the tokenizer that decodes generated ids; a left-padding tokenizer's batches realign
from their own mask). So their training features are cached like every task's: through the CLI
a second run reports "hit", tokenizes nothing and trains the very same model."""

import copy

import numpy as np
import pytest

from helpers import build_recipe, finetune_twice, write_jsonl
from qa_helpers import make_articles, write_squad


def pair_rows(n):
    return [{"prompt": f"Review {i}: {'great fun' if i % 2 else 'dull and slow'}\nSentiment:",
             "completion": " positive" if i % 2 else " negative"} for i in range(n)]


def s2s_rows(n):
    return [{"source": "a great film" if i % 2 else "a dull film", "target": "positive" if i % 2 else "negative"}
            for i in range(n)]


def tokenizer_of(model, **kwargs):
    from llmctl.config.schema import ModelConfig
    from llmctl.models.load import load_tokenizer

    return load_tokenizer(ModelConfig(name_or_path=str(model)), **kwargs)


def qa_task(tmp_path):
    from llmctl.tasks.qa import QAData, QATask

    path = write_squad(tmp_path / "train.json", make_articles(1, 1, 4, seed=5))
    return QATask(QAData(max_length=40, doc_stride=10)), path


def s2s_task(tmp_path):
    from llmctl.tasks.seq2seq import Seq2SeqData, Seq2SeqTask

    path = write_jsonl(tmp_path / "s.jsonl", s2s_rows(6))
    return Seq2SeqTask(Seq2SeqData(train=str(path), max_length=16, max_target_length=4)), path


def lm_task(tmp_path):
    from llmctl.tasks.causal_lm import CausalLMData, CausalLMTask

    path = write_jsonl(tmp_path / "c.jsonl", pair_rows(6))
    return CausalLMTask(CausalLMData(train=str(path), prompt_column="prompt", completion_column="completion",
                                     max_length=24)), path


@pytest.mark.parametrize("make, family, left", [(qa_task, "bert", False), (qa_task, "gpt2", True),
                                                (s2s_task, "t5", False), (lm_task, "gpt2", False)])
def test_featurize_and_collate_leave_the_task_unchanged(make, family, left, tiny_models, tmp_path):
    task, path = make(tmp_path)
    tokenizer = tokenizer_of(tiny_models[family], **task.tokenizer_kwargs())
    if left:
        tokenizer.padding_side = "left"
    before = copy.deepcopy(vars(task))
    for role in ("train", "validation"):
        features = task.featurize(task.load_split(role, str(path)), tokenizer)
        task.collate(features.rows(range(len(features))), tokenizer)
        if task.name != "qa":  # the tasks that decode generated ids find their tokenizer here
            assert features.tokenizer is tokenizer
    assert vars(task) == before and set(vars(task)) == {"data_cfg", "labels"}


def test_a_left_padded_qa_batch_realigns_without_remembering_the_pad_side(tiny_models, tmp_path):
    """outputs_to_keep reads where each row starts from the batch's mask: the same task object
    realigns a left-padded batch and leaves a right-padded one as it is, in either order."""
    from types import SimpleNamespace

    import torch

    task, path = qa_task(tmp_path)
    kept = {}
    for side in ("left", "right", "left"):
        tokenizer = tokenizer_of(tiny_models["gpt2"])
        tokenizer.padding_side = side
        features = task.featurize(task.load_split("train", str(path)), tokenizer)
        batch = task.collate(features.rows(range(len(features))), tokenizer)
        onehot = torch.nn.functional.one_hot(batch["start_positions"], batch["input_ids"].shape[1]).float()
        out = task.outputs_to_keep(SimpleNamespace(start_logits=onehot, end_logits=onehot), batch)
        kept[side] = out["start_logits"].argmax(1).tolist()
        assert kept[side] == features.columns["start_positions"]
    assert len(set(map(tuple, kept.values()))) == 1


def test_predictions_decode_with_the_tokenizer_of_the_features(tiny_models, tmp_path):
    """A task object that never featurized (as eval and predict build one) decodes generated ids
    with the tokenizer its features carry."""
    from llmctl.tasks.causal_lm import CausalLMData, CausalLMTask

    tokenizer = tokenizer_of(tiny_models["gpt2"])
    featurizer, decoder = (CausalLMTask(CausalLMData(prompt_column="prompt", completion_column="completion"))
                           for _ in range(2))
    split = featurizer.predict_split([{"prompt": "Review: great fun\nSentiment:"}], "stdin")
    features = featurizer.featurize(split, tokenizer)
    generated = tokenizer(" positive", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id, 5, 6]
    out = decoder.format_predictions({"generated": [np.array(generated)]}, features, split)
    assert out == [{"prompt": "Review: great fun\nSentiment:", "completion": " positive"}]


def qa_recipe(tmp_path, tiny_models):
    train = write_squad(tmp_path / "train.json", make_articles(2, 2, 4, seed=1))
    valid = write_squad(tmp_path / "valid.json", make_articles(1, 1, 4, seed=2))
    data = {"train": str(train), "validation": str(valid), "max_length": 48, "doc_stride": 16, "max_answer_length": 8}
    return build_recipe(tmp_path / "r.yaml", "qa", tiny_models["bert"], tmp_path / "run", data)


def s2s_recipe(tmp_path, tiny_models):
    data = {"train": str(write_jsonl(tmp_path / "train.jsonl", s2s_rows(24))),
            "validation": str(write_jsonl(tmp_path / "valid.jsonl", s2s_rows(6))),
            "max_length": 16, "max_target_length": 4}
    return build_recipe(tmp_path / "r.yaml", "seq2seq", tiny_models["t5"], tmp_path / "run", data)


def lm_recipe(tmp_path, tiny_models):
    data = {"train": str(write_jsonl(tmp_path / "train.jsonl", pair_rows(24))),
            "validation": str(write_jsonl(tmp_path / "valid.jsonl", pair_rows(6))),
            "prompt_column": "prompt", "completion_column": "completion", "max_length": 24, "max_new_tokens": 2}
    return build_recipe(tmp_path / "r.yaml", "causal-lm", tiny_models["gpt2"], tmp_path / "run", data)


@pytest.mark.parametrize("recipe_for", [qa_recipe, s2s_recipe, lm_recipe], ids=["qa", "seq2seq", "causal-lm"])
def test_second_run_trains_from_the_cache(recipe_for, tiny_models, tmp_path):
    recipe = recipe_for(tmp_path, tiny_models)
    runs = finetune_twice(recipe, tmp_path, ("a", "b"))
    first, second = (r.json() for r in runs)
    assert (first["data"]["cache"], second["data"]["cache"]) == ("miss", "hit")
    assert first["data"]["train_rows"] == second["data"]["train_rows"] > 0
    assert "training rows from the cache" in runs[1].stderr and "tokenizing" not in runs[1].stderr
    assert "loss" in first["metrics"] and second["metrics"] == first["metrics"]
    assert (tmp_path / "a" / "model" / "model.safetensors").read_bytes() == \
        (tmp_path / "b" / "model" / "model.safetensors").read_bytes()
