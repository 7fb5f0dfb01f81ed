"""Knowledge distillation (`distill:` recipe section) and `model.init_from` + `model.layers`, through
the real CLI on the tiny checkpoints: alpha 0 trains bit for bit as plain fine-tuning, the KL term
is the hand-computed one, the teacher's outputs are cached with the features and never
recomputed, a student cut from a teacher's layers holds exactly those weights, and a teacher
with another vocabulary or label set is refused before any weight loads."""

import json
import math
from pathlib import Path

import pytest

from helpers import (ONE_THREAD, assert_same_weights, build_recipe, error_lines, keyword_sentiment_rows, run_cli,
                     write_csv, write_recipe)
from llmctl.errors import EXIT_OK, EXIT_USAGE

FAST = {"epochs": 2, "learning_rate": 3e-3, "save_every": 1000}


def finetune(recipe, env=None):
    result = run_cli("finetune", str(recipe), "--json", env=ONE_THREAD | (env or {}))
    assert result.exit_code == EXIT_OK, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def teacher(tiny_models, tmp_path_factory):
    """(tmp, training file, the teacher run: a tiny BERT classifier) and a private feature cache."""
    tmp = tmp_path_factory.mktemp("distill")
    train = write_csv(tmp / "train.csv", keyword_sentiment_rows(48, seed=0))
    run = tmp / "teacher"
    finetune(write_recipe(tmp / "teacher.yaml", tiny_models["bert"], train, None, run,
                          train=FAST | {"epochs": 3, "learning_rate": 5e-3}))
    return tmp, train, run, {"LLMCTL_CACHE_DIR": str(tmp / "cache")}


def test_alpha_zero_trains_exactly_as_plain_fine_tuning(tiny_models, teacher):
    tmp, train, teacher_run, cache = teacher
    plain, distilled = tmp / "plain", tmp / "alpha0"
    finetune(write_recipe(tmp / "plain.yaml", tiny_models["bert"], train, None, plain, train=FAST), cache)
    told = finetune(write_recipe(tmp / "alpha0.yaml", tiny_models["bert"], train, None, distilled, train=FAST,
                                 distill={"teacher": str(teacher_run), "alpha": 0.0, "temperature": 3.0}), cache)
    assert f"distill: ran the teacher {teacher_run / 'model'} once over 48 training rows" in told.stderr
    assert_same_weights(plain, distilled)


@pytest.fixture(scope="module")
def student(teacher):
    """A 1-layer student cut from the teacher's layer 1 and distilled from it (alpha 0.5), run twice."""
    tmp, train, teacher_run, cache = teacher
    runs = []
    for name in ("student", "student-again"):
        recipe = write_recipe(tmp / f"{name}.yaml", teacher_run, train, None, tmp / name, train=FAST,
                              distill={"teacher": str(teacher_run), "alpha": 0.5, "temperature": 2.0})
        raw = recipe.read_text().replace(f"name_or_path: {teacher_run}", f"init_from: {teacher_run}\n  layers: [1]")
        recipe.write_text(raw)
        runs.append(finetune(recipe, cache))
    return runs


def test_teacher_outputs_are_cached_and_equal_recomputed_ones(teacher, student):
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from llmctl.data import store

    tmp, _, teacher_run, cache = teacher
    first, second = student
    # the first student run found the teacher's outputs of an earlier run of these features, or made them
    assert "distill: ran the teacher" in first.stderr or "the teacher is not run" in first.stderr
    assert "ran the teacher" not in second.stderr
    assert "distill: the teacher's outputs for 48 rows from the cache" in second.stderr
    assert second.json()["distill"] == {"teacher": str(teacher_run), "alpha": 0.5, "temperature": 2.0, "top_k": None,
                                        "teacher_outputs": "cache"}
    entries = [p for p in (Path(cache["LLMCTL_CACHE_DIR"]) / "features").iterdir()
               if json.loads((p / "manifest.json").read_text())["key"].get("role") == "teacher"]
    assert len(entries) == 1  # the alpha-0 run and both student runs share it
    cached = np.asarray(store.load(entries[0]).columns["logits"])
    # recomputed here, row by row, with transformers alone
    model = AutoModelForSequenceClassification.from_pretrained(teacher_run / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(teacher_run / "model")
    sentences = [row["sentence"] for row in keyword_sentiment_rows(48, seed=0)]
    with torch.no_grad():
        again = np.concatenate([model(**tokenizer(s, truncation=True, max_length=32, return_tensors="pt")).logits.numpy()
                                for s in sentences])
    assert cached.shape == (48, 2)
    np.testing.assert_allclose(cached, again, atol=1e-5)


def test_init_from_keeps_exactly_the_chosen_layers(teacher, student, tiny_models):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from llmctl.models.init_from import cut_layers

    tmp, _, teacher_run, _ = teacher
    config = json.loads((tmp / "student" / "model" / "config.json").read_text())
    assert config["num_hidden_layers"] == 1
    source = AutoModelForSequenceClassification.from_pretrained(teacher_run / "model")
    cut = cut_layers(source, AutoModelForSequenceClassification, [1]).state_dict()
    whole = source.state_dict()
    for key, value in cut.items():
        was = key.replace("encoder.layer.0.", "encoder.layer.1.")
        assert torch.equal(value, whole[was]), key
    assert not any(k.startswith("bert.encoder.layer.1.") for k in cut)
    # GPT-2: layers picked and reordered
    gpt2 = AutoModelForCausalLM.from_pretrained(tiny_models["gpt2"])
    small = cut_layers(gpt2, AutoModelForCausalLM, [1, 0]).state_dict()
    assert small["transformer.h.0.attn.c_attn.weight"].equal(gpt2.state_dict()["transformer.h.1.attn.c_attn.weight"])
    assert small["transformer.h.1.mlp.c_fc.weight"].equal(gpt2.state_dict()["transformer.h.0.mlp.c_fc.weight"])
    assert len(load_file(str(tmp / "student" / "model" / "model.safetensors"))) > 0


def test_kl_term_equals_a_hand_computation():
    import torch

    from llmctl.train.distill import kl_to_teacher, mix

    torch.manual_seed(0)
    student, teacher, t = torch.randn(3, 5), torch.randn(3, 5), 2.0

    def softmax(row):
        e = [math.exp(v / t) for v in row]
        return [v / sum(e) for v in e]

    hand = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        p, q = softmax(t_row), softmax(s_row)
        hand += sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))
    hand /= 3
    kl = kl_to_teacher(student, torch.log_softmax(teacher / t, -1), t)
    assert float(kl) == pytest.approx(hand, rel=1e-5)
    # as torch's KLDivLoss(batchmean) of the Hinton formulation
    reference = torch.nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(student / t, -1),
                                                          torch.softmax(teacher / t, -1))
    assert float(kl) == pytest.approx(float(reference), rel=1e-5)
    assert float(mix(torch.tensor(0.7), kl, 0.25, t)) == pytest.approx(0.75 * 0.7 + 0.25 * 4 * hand, rel=1e-5)

    # top-2 of 5 with the rest of the teacher's mass as one bucket
    logp = torch.log_softmax(teacher / t, -1)
    top, ids = logp.topk(2, -1)
    rest = torch.log(1 - top.exp().sum(-1))
    hand = 0.0
    for s_row, t_row, keep in zip(student.tolist(), teacher.tolist(), ids.tolist()):
        p, q = softmax(t_row), softmax(s_row)
        p_rest, q_rest = 1 - sum(p[i] for i in keep), 1 - sum(q[i] for i in keep)
        hand += sum(p[i] * (math.log(p[i]) - math.log(q[i])) for i in keep) + p_rest * math.log(p_rest / q_rest)
    assert float(kl_to_teacher(student, top, t, ids, rest)) == pytest.approx(hand / 3, rel=1e-5)
    # the full vocabulary as top-k: the exact KL again
    top, ids = logp.topk(5, -1)
    full = kl_to_teacher(student, top, t, ids, torch.full((3,), -float("inf")))
    assert float(full) == pytest.approx(float(reference), rel=1e-5)


def test_a_teacher_with_another_vocabulary_or_label_set_is_refused(tiny_models, teacher):
    tmp, train, teacher_run, cache = teacher
    out = tmp / "refused"
    other = write_recipe(tmp / "vocab.yaml", tiny_models["bert"], train, None, out, train=FAST,
                         distill={"teacher": str(tiny_models["gpt2"])})
    refused = run_cli("finetune", str(other), env=ONE_THREAD | cache)
    assert refused.exit_code == EXIT_USAGE, refused.stderr[-2000:]
    assert error_lines(refused.stderr) == [refused.stderr.strip()]
    assert (f"distill.teacher {tiny_models['gpt2']} and model.name_or_path {tiny_models['bert']} have different "
            "tokenizer vocabularies") in refused.stderr
    assert not out.exists()
    labels = write_csv(tmp / "three.csv", [r | {"label": "neutral"} if i % 3 == 0 else r
                                            for i, r in enumerate(keyword_sentiment_rows(24, seed=2))])
    refused = run_cli("finetune", str(write_recipe(tmp / "labels.yaml", tiny_models["bert"], labels, None, out,
                                                   distill={"teacher": str(teacher_run)})), env=ONE_THREAD | cache)
    assert refused.exit_code == EXIT_USAGE, refused.stderr[-2000:]
    assert error_lines(refused.stderr) == [refused.stderr.strip()]
    assert (f"distill.teacher {teacher_run} predicts the labels ['negative', 'positive'] and this run's data has "
            "['negative', 'neutral', 'positive']") in refused.stderr
    assert not out.exists()


def test_distill_is_refused_on_a_task_without_it(tiny_models, tmp_path):
    from llmctl.config.schema import DISTILL_TASKS
    from llmctl.tasks import TASKS

    # the schema's list is the tasks that declare what a teacher's outputs are matched on
    assert sorted(name for name, task in TASKS.items() if task.distill_targets) == sorted(DISTILL_TASKS)
    recipe = build_recipe(tmp_path / "ner.yaml", "ner", tiny_models["bert"], tmp_path / "run", {"train": "x.txt"},
                          distill={"teacher": str(tiny_models["bert"])})
    refused = run_cli("finetune", str(recipe))
    assert refused.exit_code == EXIT_USAGE
    assert "distill works with task: classification or causal-lm, not 'ner'" in refused.stderr
    assert not (tmp_path / "run").exists()


def test_causal_lm_student_learns_from_the_teachers_top_k(tiny_models, tmp_path):
    """A 1-layer GPT-2 cut from the tiny GPT-2 and distilled from it over its top 5 tokens."""
    import numpy as np

    from llmctl.data import store

    rows = [{"text": r["sentence"]} for r in keyword_sentiment_rows(16, seed=3)]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = build_recipe(tmp_path / "lm.yaml", "causal-lm", tiny_models["gpt2"], tmp_path / "run",
                          {"train": str(train), "validation": None, "max_length": 16},
                          train={"epochs": 1, "save_every": 1000}, distill={"teacher": str(tiny_models["gpt2"]),
                                                                            "top_k": 5, "alpha": 0.5})
    recipe.write_text(recipe.read_text().replace(f"name_or_path: {tiny_models['gpt2']}",
                                                 f"init_from: {tiny_models['gpt2']}\n  layers: [0]"))
    env = {"LLMCTL_CACHE_DIR": str(tmp_path / "cache")}
    finetune(recipe, env)
    entry = next(p for p in (tmp_path / "cache" / "features").iterdir() if (p / "ids.values.npy").is_file())
    cached = store.load(entry)
    logp, rest = np.asarray(cached.columns["logp"].values), np.asarray(cached.columns["rest"].values)
    assert logp.shape[1] == 5 and len(cached) == 16
    # k tokens plus the bucket hold the whole distribution
    np.testing.assert_allclose(np.exp(logp).sum(1) + np.exp(rest), 1.0, atol=1e-5)
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["n_layer"] == 1
