"""distill.hidden_weight (Patient KD) and distill.augment through the real CLI on the tiny BERT:
the hidden term is the hand-computed one, the teacher's matched hidden states are cached with its
logits and equal transformers' own, the term pulls the student's states towards the teacher's,
perturbed copies are masked and cut only inside the text and labelled by the teacher, and wrong
settings are refused when the recipe is read, before any weight loads."""

import json
from pathlib import Path

import pytest

from helpers import ONE_THREAD, error_lines, keyword_sentiment_rows, run_cli, write_recipe
from llmctl.errors import EXIT_USAGE
from test_distill import FAST, finetune, teacher  # noqa: F401  (the tiny teacher run, shared)


def student_recipe(tmp: Path, name: str, teacher: Path, train: Path, layers: str, **distill) -> Path:
    recipe = write_recipe(tmp / f"{name}.yaml", teacher, train, None, tmp / name, train=FAST,
                          distill={"teacher": str(teacher), **distill})
    recipe.write_text(recipe.read_text().replace(f"name_or_path: {teacher}", f"init_from: {teacher}\n  layers: {layers}"))
    return recipe


def first_token_states(model_dir: Path, layer: int):
    """[48, width]: the first token's hidden state after `layer` over the training sentences."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = []
    with torch.no_grad():
        for row in keyword_sentiment_rows(48, seed=0):
            inputs = tokenizer(row["sentence"], truncation=True, max_length=32, return_tensors="pt")
            rows.append(model(**inputs, output_hidden_states=True).hidden_states[layer][:, 0])
    return torch.cat(rows)


def test_hidden_distance_equals_a_hand_computation():
    import numpy as np
    import torch

    from llmctl.train.distill import hidden_distance

    gen = np.random.default_rng(0)
    s, t = gen.normal(size=(3, 2, 5)), gen.normal(size=(3, 2, 5))
    by_hand = np.mean([sum(np.sum((s[r, j] / np.linalg.norm(s[r, j]) - t[r, j] / np.linalg.norm(t[r, j])) ** 2)
                           for j in range(2)) for r in range(3)])
    got = hidden_distance(torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float32))
    assert got.item() == pytest.approx(by_hand, rel=1e-5)


def test_the_hidden_term_pulls_the_student_towards_the_teachers_states(teacher):
    """Both students start from the teacher's first layer and learn only from it (alpha 1); the
    one with the hidden term ends with first-token states nearer the teacher's last layer."""
    import numpy as np
    import torch

    from llmctl.data import store
    from llmctl.train.distill import hidden_distance

    tmp, train, teacher_run, cache = teacher
    plain = finetune(student_recipe(tmp, "soft", teacher_run, train, "[0]", alpha=1.0), cache)
    pulled = finetune(student_recipe(tmp, "pulled", teacher_run, train, "[0]", alpha=1.0, hidden_weight=20.0), cache)
    assert pulled.json()["distill"] == {"teacher": str(teacher_run), "alpha": 1.0, "temperature": 2.0, "top_k": None,
                                        "teacher_outputs": "computed", "hidden_weight": 20.0, "hidden_layers": [2]}
    assert "hidden_layers" not in plain.json()["distill"]
    # the cache entry keeps the teacher's layer-2 first-token states beside its logits: transformers' own
    target = first_token_states(teacher_run / "model", 2)
    entries = [p for p in (Path(cache["LLMCTL_CACHE_DIR"]) / "features").iterdir()
               if json.loads((p / "manifest.json").read_text())["key"].get("hidden_layers") == [2]]
    assert len(entries) == 1
    cached = np.asarray(store.load(entries[0]).columns["hidden"])
    assert cached.shape == (48, 1, target.shape[1])
    np.testing.assert_allclose(cached[:, 0], target.numpy(), atol=1e-5)

    def distance(run: str) -> float:
        return hidden_distance(first_token_states(tmp / run / "model", 1)[:, None], target[:, None]).item()

    assert distance("pulled") < 0.5 * distance("soft"), (distance("pulled"), distance("soft"))


@pytest.mark.parametrize("distill, layers, message", [
    ({"hidden_weight": 10.0, "hidden_layers": [1, 2]}, "[0]",
     "distill.hidden_layers [1, 2]: give one teacher layer per student layer (1), each from 1 to 2"),
    ({"hidden_weight": 10.0, "hidden_layers": [3]}, "[0]",
     "distill.hidden_layers [3]: give one teacher layer per student layer (1), each from 1 to 2"),
])
def test_wrong_hidden_settings_are_refused_before_any_weight_loads(teacher, distill, layers, message):
    tmp, train, teacher_run, cache = teacher
    out = tmp / "refused"
    refused = run_cli("finetune", str(student_recipe(tmp, "refused", teacher_run, train, layers, **distill)),
                      env=ONE_THREAD | cache)
    assert refused.exit_code == EXIT_USAGE, refused.stderr[-2000:]
    assert error_lines(refused.stderr) == [refused.stderr.strip()]
    assert message in refused.stderr
    assert not out.exists()


@pytest.mark.parametrize("task, distill, message", [
    ("causal-lm", {"hidden_weight": 1.0},
     "distill.hidden_weight matches a classifier's first-token hidden states; task causal-lm"),
    ("classification", {"hidden_layers": [2]},
     "distill.hidden_layers chooses the layers that distill.hidden_weight matches"),
])
def test_the_recipe_check_refuses_hidden_settings_that_do_nothing(tiny_models, tmp_path, task, distill, message):
    from helpers import build_recipe

    model = tiny_models["gpt2" if task == "causal-lm" else "bert"]
    recipe = build_recipe(tmp_path / "r.yaml", task, model, tmp_path / "run", {"train": str(tmp_path / "x.txt")},
                          distill={"teacher": str(model), **distill})
    refused = run_cli("finetune", str(recipe))
    assert refused.exit_code == EXIT_USAGE
    assert "r.yaml:" in refused.stderr and message in refused.stderr  # the recipe's line, listed with the rest
    assert not (tmp_path / "run").exists()


def test_perturbed_copies_mask_and_cut_only_the_text(tiny_models):
    from transformers import AutoTokenizer

    from llmctl.data.features import Features
    from llmctl.train.augment import perturbed_copies

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    sentences = [row["sentence"] for row in keyword_sentiment_rows(40, seed=0)]
    enc = tokenizer(sentences)
    rows = Features({"input_ids": enc["input_ids"], "labels": [i % 2 for i in range(40)]}, [len(x) for x in enc["input_ids"]])
    special = set(tokenizer.all_special_ids)
    out = perturbed_copies(rows, 3, 7, tokenizer.mask_token_id, special)
    assert len(out) == 160 and out.columns["input_ids"][:40] == enc["input_ids"]
    assert out.columns["labels"][40:] == [i % 2 for i in range(40) for _ in range(3)]
    assert perturbed_copies(rows, 3, 7, tokenizer.mask_token_id, special).columns == out.columns  # the seed decides
    masked = cut = 0
    for k, copy in enumerate(out.columns["input_ids"][40:]):
        source = enc["input_ids"][k // 3]
        assert copy[0] == source[0] and copy[-1] == source[-1]  # [CLS] ... [SEP] stay
        assert set(copy) - set(source) <= {tokenizer.mask_token_id}
        masked += copy.count(tokenizer.mask_token_id)
        cut += len(copy) < len(source) and len(copy) <= 2 + 5
    assert masked > 0 and cut > 0


def test_augmented_copies_are_labelled_by_the_teacher_and_trained_on(teacher):
    from llmctl.data import store

    tmp, train, teacher_run, cache = teacher
    run = finetune(student_recipe(tmp, "augmented", teacher_run, train, "[0, 1]", alpha=0.5, augment=2), cache)
    info = run.json()["distill"]
    assert info["augment"] == 2 and 0.0 <= info["copies_keeping_their_label"] <= 1.0
    assert (f"distill: 48 training rows and 96 perturbed copies, labelled by the teacher "
            f"({info['copies_keeping_their_label']:.1%} keep their row's label)") in run.stderr
    assert run.json()["train"]["samples"] == 2 * 144  # two epochs over the rows and their copies
    entries = [p for p in (Path(cache["LLMCTL_CACHE_DIR"]) / "features").iterdir()
               if json.loads((p / "manifest.json").read_text())["key"].get("role") == "teacher"
               and len(store.load(p)) == 144]
    assert len(entries) == 1
    again = finetune(student_recipe(tmp, "augmented-again", teacher_run, train, "[0, 1]", alpha=0.5, augment=2), cache)
    assert "the teacher's outputs for 144 rows from the cache" in again.stderr
