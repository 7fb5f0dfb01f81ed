"""task: multiple-choice end to end through the CLI: BERT (AutoModelForMultipleChoice), GPT-2
(each ending's log-likelihood) and T5 (each ending scored as the target) fine-tune, eval and
predict; a decoder scores zero-shot with the harness's acc / acc_norm; bad data is refused
before any model loads."""

import json
import random

import pytest

from helpers import ONE_THREAD, build_recipe, error_lines, run_cli, smollm2_gguf, write_jsonl
from llmctl.errors import EXIT_DATA

PEOPLE = ["Alice", "Bob", "Carla", "David", "Emma", "Farid"]
ACTS = ["opens the door", "eats a sandwich", "reads a book", "plays the piano", "walks the dog"]


def swag_rows(n: int) -> list[dict]:
    """SWAG's shape: sent1, sent2 (the start of every ending), ending0..ending3, an integer label."""
    rng = random.Random(0)
    rows = []
    for _ in range(n):
        person, act = rng.choice(PEOPLE), rng.randrange(len(ACTS))
        endings = rng.sample([a for a in ACTS if a != ACTS[act]], 3) + [ACTS[act]]
        rng.shuffle(endings)
        rows.append({"sent1": f"{person} wants to {ACTS[act].split()[0].rstrip('s')}.", "sent2": f"{person}",
                     **{f"ending{k}": e for k, e in enumerate(endings)}, "label": endings.index(ACTS[act])})
    return rows


def arc_rows(n: int) -> list[dict]:
    """ARC's shape as a local file: a question, a list of choices, a letter answerKey."""
    return [{"question": f"What does {r['sent2']} do next, wanting to {r['sent1'].split(' to ')[1]}",
             "choices": [r[f"ending{k}"] for k in range(4)], "answerKey": "ABCD"[r["label"]]} for r in swag_rows(n)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mc_data")
    return {"swag": write_jsonl(root / "swag.jsonl", swag_rows(24)), "arc": write_jsonl(root / "arc.jsonl", arc_rows(12)),
            "inputs": write_jsonl(root / "inputs.jsonl", [{k: v for k, v in r.items() if k != "label"}
                                                          for r in swag_rows(3)])}


SWAG_KEYS = {"second_column": "sent2", "max_length": 48}
ARC_KEYS = {"context_column": "question", "choices_column": "choices", "label_column": "answerKey"}


@pytest.fixture(scope="module", params=["bert", "gpt2", "t5"])
def trained(request, tiny_models, data, tmp_path_factory):
    """One short fine-tune per family: (family, run directory, the finetune's final metrics)."""
    family, root = request.param, tmp_path_factory.mktemp(f"mc_{request.param}")
    recipe = build_recipe(root / "r.yaml", "multiple-choice", tiny_models[family], root / "run",
                          {"train": str(data["swag"]), "validation": str(data["swag"]), **SWAG_KEYS},
                          train={"max_steps": 2})
    result = run_cli("finetune", str(recipe), "--json", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    return family, root / "run", result.json()["metrics"]


def test_finetune_eval_predict(trained, data):
    family, run, final = trained
    scoring = family != "bert"  # decoders and T5 score each ending's log-likelihood
    expected = {"loss", "accuracy"} | ({"acc_norm"} if scoring else set())
    assert set(final) >= expected

    evaluated = run_cli("eval", str(run), "--json", env=ONE_THREAD)
    assert evaluated.exit_code == 0, evaluated.stderr
    metrics = evaluated.json()["metrics"]
    assert set(metrics) == expected
    for name in expected:  # eval of the saved best model repeats the run's own validation
        assert metrics[name] == pytest.approx(final[name], abs=1e-6)

    predicted = run_cli("predict", str(run), "--input", str(data["inputs"]), "--json", env=ONE_THREAD)
    assert predicted.exit_code == 0, predicted.stderr
    rows, inputs = predicted.json()["predictions"], [json.loads(line) for line in data["inputs"].read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3]
    for row, given in zip(rows, inputs):
        assert row["sent1"] == given["sent1"] and len(row["scores"]) == 4
        assert row["prediction"] == max(range(4), key=row["scores"].__getitem__)
        assert row["ending"] == given[f"ending{row['prediction']}"]
        if scoring:  # summed log-likelihoods
            assert all(s < 0 for s in row["scores"])
    if family == "gpt2":
        assert rows[0]["scores"] == pytest.approx(direct_scores(run / "model", inputs[0]), abs=1e-4)


def direct_scores(model_dir, row):
    """log P(" " + ending | sent1 + " " + sent2) per ending, through the harness-mirroring scorer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmctl.generation.loglikelihood import encode_requests, score_causal

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    request = encode_requests([f"{row['sent1']} {row['sent2']}"], [" " + row[f"ending{k}"] for k in range(4)],
                              tokenizer, "causal")
    with torch.inference_mode():
        return score_causal(model, request, 8, "cpu")[0].tolist()


def test_zero_shot_decoder_reports_acc_and_acc_norm_as_the_harness(tiny_models, data, tmp_path):
    """A Llama checkpoint llmctl never trained, on ARC-shaped data: accuracy and acc_norm equal the
    ones computed directly from each ending's log-likelihood (acc_norm: per character)."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmctl.generation.loglikelihood import encode_requests, score_causal

    recipe = build_recipe(tmp_path / "arc.yaml", "multiple-choice", tiny_models["llama"], tmp_path / "unused",
                          {"validation": str(data["arc"]), **ARC_KEYS})
    result = run_cli("eval", str(tiny_models["llama"]), "--recipe", str(recipe), "--precision", "fp32", "--json",
                     "--batch-size", "5", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    metrics = result.json()["metrics"]
    assert set(metrics) == {"loss", "accuracy", "acc_norm"}

    rows = [json.loads(line) for line in data["arc"].read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llama"])
    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"], dtype=torch.float32).eval()
    with torch.inference_mode():
        sums = np.array([score_causal(model, encode_requests([r["question"]], [" " + c for c in r["choices"]],
                                                             tokenizer, "causal"), 8, "cpu")[0].numpy() for r in rows])
    gold = np.array(["ABCD".index(r["answerKey"]) for r in rows])
    chars = np.array([[len(c) for c in r["choices"]] for r in rows])
    assert metrics["accuracy"] == pytest.approx(float((sums.argmax(1) == gold).mean()))
    assert metrics["acc_norm"] == pytest.approx(float(((sums / chars).argmax(1) == gold).mean()))
    log_probs = sums - np.log(np.exp(sums).sum(1, keepdims=True))
    assert metrics["loss"] == pytest.approx(float(-log_probs[np.arange(len(gold)), gold].mean()), rel=1e-4)


def test_eval_task_flag_uses_swag_columns(tiny_models, data):
    result = run_cli("eval", str(tiny_models["qwen2"]), "--task", "multiple-choice", "--data", str(data["swag"]),
                     "--max-samples", "6", "--fail-under", "acc_norm=1.01", "--json", env=ONE_THREAD)
    assert result.exit_code == 4  # the gate ran on a real acc_norm
    out = result.json()  # one object: the failed gate after it prints no second one
    assert "acc_norm" in out["metrics"] and out["samples"] == 6
    # eval writes nothing: no output_dir (it held the model given, a .gguf path for a GGUF file)
    assert "output_dir" not in out and out["model"] == str(tiny_models["qwen2"])


def bad_run(tmp_path, tiny_models, rows, **keys):
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    recipe = build_recipe(tmp_path / "r.yaml", "multiple-choice", tiny_models["bert"], tmp_path / "run",
                          {"train": str(data), "validation": str(data), **keys})
    result = run_cli("finetune", str(recipe))
    assert result.exit_code == EXIT_DATA and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
    return data, error_lines(result.stderr)


def test_rows_with_different_numbers_of_endings(tmp_path, tiny_models):
    rows = arc_rows(4)
    rows[2]["choices"] = rows[2]["choices"][:3]
    data, errors = bad_run(tmp_path, tiny_models, rows, **ARC_KEYS)
    assert errors == [f"error: {data}:3: 3 endings, but {data}:1 has 4; every row needs the same number of endings. "
                      "Fix or remove that row (or split the data by count)."]


def test_label_outside_the_endings(tmp_path, tiny_models):
    rows = swag_rows(4)
    rows[1]["label"] = 4
    data, errors = bad_run(tmp_path, tiny_models, rows)
    assert len(errors) == 1 and errors[0].startswith(f"error: {data}:2: label 4 ('label') is outside the 4 endings")


def test_missing_column(tmp_path, tiny_models):
    data, errors = bad_run(tmp_path, tiny_models, swag_rows(4), ending_columns=["ending0", "ending5"])
    assert len(errors) == 1
    assert errors[0].startswith(f"error: data.ending_columns: column 'ending5' is not in {data}; its columns are: ")


@pytest.mark.parametrize("choices,label,index", [
    (["a cat", "a dog", "a cow"], 2, 2),  # SWAG / PIQA: an index from 0
    (["a cat", "a dog", "a cow"], "1", 1),  # HellaSwag: a digit string
    (["a cat", "a dog", "a cow"], "C", 2),  # a letter, A = the first ending
    (["a cat", "a dog", "a cow"], "a dog", 1),  # the ending's text
    ({"text": ["a cat", "a dog", "a cow"], "label": ["1", "2", "3"]}, "1", 0),  # ARC's digit answerKeys
    ({"text": ["a cat", "a dog", "a cow"], "label": ["A", "B", "C"]}, "B", 1),  # ARC's hub shape
])
def test_label_forms(tmp_path, choices, label, index):
    from llmctl.tasks.multiple_choice import MultipleChoiceTask
    from llmctl.tasks.multiple_choice_data import MultipleChoiceData

    path = write_jsonl(tmp_path / "one.jsonl", [{"q": "Which animal barks?", "c": choices, "a": label}])
    task = MultipleChoiceTask(MultipleChoiceData(context_column="q", choices_column="c", label_column="a"))
    split = task.load_split("validation", str(path))
    assert split.labels == [index] and split.endings == [["a cat", "a dog", "a cow"]]


EASY = [("The capital of France is", ["Paris.", "a banana.", "the ocean.", "purple."], 0),
        ("Water freezes at a temperature of", ["zero degrees Celsius.", "one thousand degrees.", "a happy song.",
                                               "the letter B."], 0),
        ("To cut paper, you use a pair of", ["socks.", "scissors.", "clouds.", "spoons."], 1),
        ("The sun rises in the", ["basement.", "refrigerator.", "east.", "soup."], 2),
        ("She was thirsty, so she drank a glass of", ["sand.", "water.", "bricks.", "music."], 1),
        ("When it rains, people open their", ["umbrellas.", "refrigerators.", "passports.", "teeth."], 0),
        ("Birds can fly because they have", ["wheels.", "wings.", "keys.", "shoes."], 1),
        ("A week has seven", ["days.", "elephants.", "oceans.", "pianos."], 0)]


@pytest.mark.slow
def test_real_smollm2_gguf_zero_shot_knows_easy_facts(tmp_path):
    """The real SmolLM2-135M-Instruct, straight from its .gguf file, picks the sensible ending."""
    gguf = smollm2_gguf()
    data = write_jsonl(tmp_path / "easy.jsonl", [{"sent1": c, **{f"ending{k}": e for k, e in enumerate(es)}, "label": g}
                                                 for c, es, g in EASY])
    result = run_cli("eval", str(gguf), "--task", "multiple-choice", "--data", str(data), "--precision", "fp32",
                     "--json")
    assert result.exit_code == 0, result.stderr
    out = result.json()
    assert out["zero_shot"]["model_kind"] == "causal" and out["samples"] == len(EASY)
    assert out["metrics"]["accuracy"] >= 0.75  # 1.0 when measured; chance is 0.25


@pytest.mark.slow
def test_zero_shot_equals_lm_evaluation_harness(tiny_models, data, tmp_path):
    """The same SWAG-shaped rows as an lm-evaluation-harness multiple_choice task (context sent1 +
    sent2, the endings as choices joined by its " " delimiter) on the same Llama checkpoint: the
    harness's acc and acc_norm equal llmctl's."""
    import logging

    import lm_eval
    import yaml
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    result = run_cli("eval", str(tiny_models["llama"]), "--task", "multiple-choice", "--data", str(data["swag"]),
                     "--recipe", str(build_recipe(tmp_path / "r.yaml", "multiple-choice", tiny_models["llama"],
                                                  tmp_path / "unused", {"validation": None, **SWAG_KEYS})),
                     "--precision", "fp32", "--json", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    ours = result.json()["metrics"]

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "swag_tiny.yaml").write_text(yaml.safe_dump({
        "task": "swag_tiny", "dataset_path": "json", "dataset_kwargs": {"data_files": {"validation": str(data["swag"])}},
        "output_type": "multiple_choice", "validation_split": "validation",
        "doc_to_text": "{{sent1}} {{sent2}}", "doc_to_target": "label",
        "doc_to_choice": "{{[ending0, ending1, ending2, ending3]}}",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")],
        "metadata": {"version": 1.0}}))
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    lm = HFLM(pretrained=str(tiny_models["llama"]), dtype="float32", device="cpu", batch_size=8)
    out = lm_eval.simple_evaluate(model=lm, tasks=["swag_tiny"], num_fewshot=0, bootstrap_iters=0, log_samples=False,
                                  task_manager=TaskManager(include_path=str(tasks), include_defaults=False))
    theirs = out["results"]["swag_tiny"]
    assert ours["accuracy"] == pytest.approx(theirs["acc,none"])
    assert ours["acc_norm"] == pytest.approx(theirs["acc_norm,none"])
