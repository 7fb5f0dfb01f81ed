"""The NER task with real tiny tokenizers but no model: data checks, windows, labels, stitching."""

import json

import numpy as np
import pytest

from llmctl.errors import DataError
from llmctl.console import tell
from llmctl.tasks.ner import NerData, NerTask

TRAIN = """-DOCSTART- -X- -X- O

Alice NNP B-PER
Smith NNP I-PER
works VBZ O
for IN O
Acme NNP B-ORG
Corp NNP I-ORG
in IN O
Paris NNP B-LOC
. . O

Bob NNP B-PER
was VBD O
born VBN O
in IN O
Madrid NNP B-LOC
. . O
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def tokenizer(tiny_models, family):
    from llmctl.config.schema import ModelConfig
    from llmctl.models.load import load_tokenizer

    return load_tokenizer(ModelConfig(name_or_path=str(tiny_models[family])), **NerTask(NerData()).tokenizer_kwargs())


def trained_task(tmp_path, **data) -> NerTask:
    task = NerTask(NerData(**data))
    return task.with_labels(task.fit(task.load_split("train", str(write(tmp_path, "train.txt", TRAIN)))))


def oracle(task, features, split, bias_first_only=False) -> dict:
    """Logits that put the gold tag of each word on all its sub-tokens (padded like the loop does)."""
    kept = {"logits": []}
    for f, ids in enumerate(features.columns["input_ids"]):
        z = np.zeros((len(ids) + 2, len(task.labels.names)), dtype=np.float32)
        example, first = features.meta["example"][f], features.meta["first_word"][f]
        for k, (a, b) in enumerate(features.meta["spans"][f]):
            z[a:b, task.labels.names.index(split.tags[example][first + k])] = 8.0
        kept["logits"].append(z)
    return kept


def test_labels_from_training_and_unseen_tag_in_eval_names_the_line(tmp_path):
    task = trained_task(tmp_path)
    assert task.labels.names == ("O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER")
    assert task.model_kwargs()["id2label"][5] == "B-PER"
    valid = write(tmp_path, "valid.txt", "Bonn B-LOC\n\nthe O\nEU B-GPE\n")
    with pytest.raises(DataError) as info:
        task.load_split("validation", str(valid))
    assert f"data.validation: {valid}:4: tag 'B-GPE' was not seen in training" in str(info.value)


def test_repair_is_said_once_with_a_count(tmp_path, capsys):
    task = trained_task(tmp_path)
    valid = write(tmp_path, "valid.txt", "Bonn B-LOC\nand O\nParis B-LOC\n\nin O\nBerlin I-LOC\n\nEU I-ORG\n")
    split = tell(task.load_split("validation", str(valid)))  # the task returns notes; the caller shows them
    assert split.tags[2] == ["B-ORG"]
    err = capsys.readouterr().err
    assert err.count("warning:") == 1
    assert f"2 entities started with I- (no B- before), first at {valid}:6; read as B-" in err


def test_label_names_from_recipe_and_jsonl_with_ids(tmp_path):
    rows = [{"tokens": ["Alice", "visits", "Paris"], "ner_tags": [1, 0, 3]}, {"tokens": ["hello"], "ner_tags": [0]}]
    path = write(tmp_path, "train.jsonl", "".join(json.dumps(r) + "\n\n" for r in rows))
    task = NerTask(NerData(label_names=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]))
    split = task.load_split("train", str(path))
    assert split.tokens[0] == ["Alice", "visits", "Paris"] and split.tags[0] == ["B-PER", "O", "B-LOC"]
    bad = write(tmp_path, "bad.jsonl", json.dumps({"tokens": ["a", "b"], "ner_tags": ["O"]}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: 2 tokens but 1 tags"):
        task.load_split("validation", str(bad))
    other = write(tmp_path, "other.jsonl", "\n" + json.dumps({"words": ["a"], "tags": ["O"]}) + "\n")
    with pytest.raises(DataError, match=r"data.tokens_column: column 'tokens' is not in .*other.jsonl:2.* words, tags"):
        task.load_split("validation", str(other))
    with pytest.raises(Exception, match="not IOB2"):
        NerData(label_names=["O", "PER"])


def test_hub_style_classlabel_dataset(tmp_path):
    import datasets

    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    folder = tmp_path / "hub"
    folder.mkdir()
    for split_name, n in (("train", 3), ("validation", 2)):
        datasets.Dataset.from_dict({"tokens": [["Alice", "in", "Paris"]] * n, "ner_tags": [[1, 0, 3]] * n},
                                   features=features).to_parquet(str(folder / f"{split_name}.parquet"))
    task = NerTask(NerData(dataset=str(folder)))
    split = task.load_split("train", "train")
    task = task.with_labels(task.fit(split))
    assert task.labels.names == tuple(names) and split.tags[0] == ["B-PER", "O", "B-LOC"] and len(split) == 3
    assert len(task.load_split("validation", "validation")) == 2


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5"])
def test_long_sentence_is_windowed_and_stitched_back(tmp_path, tiny_models, family):
    task = trained_task(tmp_path, max_length=12, window_overlap=4)
    words = ("Alice Smith works for Acme Corp in Paris and Bob was born in Madrid while Alice Smith "
             "visited Acme Corp in Paris .").split()
    tags = ["B-PER", "I-PER", "O", "O", "B-ORG", "I-ORG", "O", "B-LOC", "O", "B-PER", "O", "O", "O", "B-LOC",
            "O", "B-PER", "I-PER", "O", "B-ORG", "I-ORG", "O", "B-LOC", "O"]
    path = write(tmp_path, "long.txt", "".join(f"{w} {t}\n" for w, t in zip(words, tags)) + "\nBob B-PER\n")
    split = task.load_split("validation", str(path))
    tok = tokenizer(tiny_models, family)
    features = task.featurize(split, tok)
    example = features.meta["example"]
    assert example.count(0) > 2 and example.count(1) == 1
    assert max(features.lengths) <= 12
    assert any("1 sentence(s) longer than max_length 12 were split" in n.text for n in features.notes)
    covered = set()
    for f, e in enumerate(example):
        ids = features.columns["input_ids"][f]
        first = features.meta["first_word"][f]
        for k, (a, b) in enumerate(features.meta["spans"][f]):
            covered.add((e, first + k))
            # The label sits on the first sub-token only; the rest are ignored.
            assert features.columns["labels"][f][a] == task.labels.names.index(split.tags[e][first + k])
            assert all(x == -100 for x in features.columns["labels"][f][a + 1:b])
        if family == "bert":
            assert tok.convert_ids_to_tokens(ids[:1] + ids[-1:]) == ["[CLS]", "[SEP]"]
    assert covered == {(0, w) for w in range(len(words))} | {(1, 0)}
    metrics = task.compute_metrics(oracle(task, features, split), features, split)
    assert metrics["f1"] == 1.0 and metrics["accuracy"] == 1.0 and metrics["PER_number"] == 4
    assert 0 < metrics["loss"] < 0.05


def test_stitching_prefers_the_window_with_more_context(tmp_path, tiny_models):
    task = trained_task(tmp_path, max_length=10, window_overlap=4)
    words = "a b c d e f g h i j k l".split()
    path = write(tmp_path, "v.txt", "".join(f"{w} O\n" for w in words))
    split = task.load_split("validation", str(path))
    features = task.featurize(split, tokenizer(tiny_models, "bert"))
    assert len(features) > 1
    # Each window votes for a different label; a word must take the vote of a window where
    # it is not at the edge whenever such a window exists.
    kept = {"logits": []}
    for f, ids in enumerate(features.columns["input_ids"]):
        z = np.zeros((len(ids), len(task.labels.names)))
        z[:, f % len(task.labels.names)] = 5
        kept["logits"].append(z)
    probs = task._word_probs(kept, features, split)[0]
    for f in range(len(features)):
        first, spans = features.meta["first_word"][f], features.meta["spans"][f]
        if f > 0 and f < len(features) - 1:
            middle = first + len(spans) // 2
            assert probs[middle].argmax() == f % len(task.labels.names)


def test_label_all_subtokens_continues_with_i(tmp_path, tiny_models):
    task = trained_task(tmp_path, label_all_subtokens=True)
    split = task.load_split("validation", str(write(tmp_path, "v.txt", "Zzyzxville B-LOC\nrocks O\n")))
    features = task.featurize(split, tokenizer(tiny_models, "bert"))
    (a, b), (c, d) = features.meta["spans"][0]
    labels = features.columns["labels"][0]
    assert b - a > 1
    assert labels[a:b] == [task.labels.names.index("B-LOC")] + [task.labels.names.index("I-LOC")] * (b - a - 1)
    assert labels[c:d] == [0] * (d - c)


def test_gpt2_words_get_a_prefix_space(tiny_models):
    tok = tokenizer(tiny_models, "gpt2")
    enc = tok([["Paris", "is", "big"]], is_split_into_words=True, add_special_tokens=False)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"][0])
    firsts = [pieces[i] for i, w in enumerate(enc.word_ids(0)) if i == 0 or enc.word_ids(0)[i - 1] != w]
    assert all(p.startswith("Ġ") for p in firsts), pieces


def test_predictions_on_raw_text_keep_character_offsets(tmp_path, tiny_models):
    task = trained_task(tmp_path)
    rows = [{"text": "Yesterday,  Alice Smith flew to Paris."}, {"tokens": ["Bob", "met", "Acme", "Corp"]}]
    split = task.predict_split(rows, "<stdin>")
    assert split.tokens[0] == ["Yesterday", ",", "Alice", "Smith", "flew", "to", "Paris", "."]
    features = task.featurize(split, tokenizer(tiny_models, "t5"))
    gold = [["O", "O", "B-PER", "I-PER", "O", "O", "B-LOC", "O"], ["B-PER", "O", "B-ORG", "I-ORG"]]
    split.tags = gold  # what the model "predicts"
    out = task.format_predictions(oracle(task, features, split), features, split)
    assert out[0]["text"] == rows[0]["text"]
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in out[0]["entities"]] == [
        ("Alice Smith", "PER", 12, 23), ("Paris", "LOC", 32, 37)]
    assert all(0.9 < e["score"] <= 1 for e in out[0]["entities"])
    assert out[1]["tags"] == gold[1]
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in out[1]["entities"]] == [
        ("Bob", "PER", 0, 1), ("Acme Corp", "ORG", 2, 4)]
    with pytest.raises(DataError, match=r"<stdin> row 1: give 'text'"):
        task.predict_split([{"sentence": "x"}], "<stdin>")


@pytest.mark.parametrize("name", ["conll2003-bert", "conll2003-gpt2", "conll2003-t5", "conll2003-minilm-local"])
def test_ner_recipes_validate_and_open_with_their_command(name):
    from helpers import REPO
    from llmctl.tasks.recipe import load_recipe

    path = REPO / "llmctl" / "recipes" / "ner" / f"{name}.yaml"
    first = path.read_text().splitlines()[0]
    assert (first + " ").startswith(f"# llmctl finetune ner/{name} "), first
    recipe = load_recipe(f"ner/{name}")
    assert recipe.task == "ner" and recipe.train.metric_for_best == "f1" and recipe.output_dir.startswith("runs/")
    if recipe.data.dataset:
        assert recipe.data.label_names[0] == "O" and len(recipe.data.label_names) == 9
