"""`llmctl doctor RECIPE` and `llmctl finetune RECIPE --dry-run`, driven through the CLI on files the
tests write: clean data passes with exit 0; each deliberately planted flaw is found by name, with
its count and first line numbers; --strict turns warnings into exit 3; a dry run prints the plan,
creates no run directory and never needs the weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import build_recipe, error_lines, run_cli, write_csv, write_recipe

WORDS = ["bright", "calm", "dark", "eager", "fancy", "gentle", "happy", "icy", "jolly", "keen", "lazy", "merry"]


def sentence(i: int, words: int = 4) -> str:
    """A sentence of its own for every i (no accidental duplicates)."""
    return " ".join(WORDS[(i // len(WORDS) ** k) % len(WORDS)] for k in range(words)) + f" case {i}"


def clean_rows(n: int, offset: int = 0) -> list[dict]:
    return [{"sentence": sentence(i + offset), "label": i % 2} for i in range(n)]


def findings(result) -> dict:
    """{(check, split): finding} of a --json result."""
    return {(f["check"], f["split"]): f for f in result.json()["findings"]}


def test_clean_data_passes_with_the_documented_json(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", clean_rows(40))
    valid = write_csv(tmp_path / "valid.csv", clean_rows(10, offset=1000))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, valid, tmp_path / "runs" / "x")

    result = run_cli("doctor", str(recipe), "--json")

    assert result.exit_code == 0, result.stderr
    out = result.json()
    assert set(out) == {"task", "splits", "epoch", "cache", "errors", "warnings", "findings", "exit_code"}
    assert (out["task"], out["errors"], out["warnings"], out["findings"], out["exit_code"]) == ("classification", 0, 0, [], 0)
    train_figures = out["splits"]["train"]
    assert train_figures["rows"] == 40 and out["splits"]["validation"]["rows"] == 10
    assert train_figures["labels"] == {"counts": {"0": 20, "1": 20}, "imbalance": 1.0}
    assert set(train_figures["tokens"]) >= {"p50", "p90", "p99", "max", "max_length", "truncated", "truncated_share",
                                            "max_length_for_99"}
    assert train_figures["tokens"]["truncated"] == 0 and train_figures["tokens"]["max_length"] == 32
    # batch 8 (helpers.SMALL_TRAIN): 40 rows are 5 steps an epoch
    assert out["epoch"] == {"train_rows": 40, "steps_per_epoch": 5, "total_steps": 5, "batch_size": 8,
                            "gradient_accumulation_steps": 1, "processes": 1, "effective_batch_size": 8}
    assert not (tmp_path / "runs").exists()

    # The doctor built the training features through the feature cache: a second run reads them back.
    again = run_cli("doctor", str(recipe), "--json")
    assert again.json()["cache"] == "hit" and out["cache"] == "miss"

    plain = run_cli("doctor", str(recipe))
    assert plain.exit_code == 0 and "nothing wrong found" in plain.stdout and "steps_per_epoch" not in plain.stdout
    assert "one epoch: 5 optimizer steps" in plain.stdout
    one_step = run_cli("doctor", str(recipe), "--set", "train.batch_size=64")  # issue 27 item 23: not "1 ... steps"
    assert "one epoch: 1 optimizer step (batch 64" in one_step.stdout, one_step.stdout


@pytest.fixture(scope="module")
def flawed_classification(tiny_models, tmp_path_factory):
    """Training data with every classification flaw but unseen labels planted at known lines
    (csv: the header is line 1, row i is line i + 2), validation with leaked rows and a label 2."""
    tmp = tmp_path_factory.mktemp("flawed")
    rows = [{"sentence": sentence(i), "label": 0} for i in range(36)] + \
           [{"sentence": sentence(100 + i), "label": 1} for i in range(4)]
    rows[5]["sentence"] = "   "  # line 7
    rows[9]["sentence"] = ""  # line 11 (an empty csv cell)
    rows.append(dict(rows[2]))  # line 42 repeats line 4
    rows.append(dict(rows[3]))  # line 43 repeats line 5
    rows.append({"sentence": rows[14]["sentence"], "label": 1})  # line 44: line 16's text, another label
    long = " ".join(WORDS * 4)
    rows[20]["sentence"] = long  # line 22: far more than max_length 24
    rows[30]["sentence"] = long + " again"  # line 32
    train = write_csv(tmp / "train.csv", rows)
    valid_rows = clean_rows(6, offset=500)
    valid_rows[1] = {"sentence": rows[12]["sentence"], "label": 0}  # line 3 leaks train line 14
    valid_rows[4] = {"sentence": sentence(700), "label": 2}  # line 6: a label training never shows
    valid = write_csv(tmp / "valid.csv", valid_rows)
    recipe = write_recipe(tmp / "r.yaml", tiny_models["bert"], train, valid, tmp / "runs" / "x",
                          data={"max_length": 24})
    return recipe, run_cli("doctor", str(recipe), "--json")


def test_every_classification_flaw_is_found(flawed_classification):
    _, result = flawed_classification
    assert result.exit_code == 3, result.stderr
    found = findings(result)
    expect = {("imbalance", "train"): ("warning", 5, []),
              ("conflicting_labels", "train"): ("warning", 2, [16, 44]),
              ("empty_text", "train"): ("warning", 2, [7, 11]),
              ("duplicates", "train"): ("warning", 2, [42, 43]),
              ("truncation", "train"): ("warning", 2, [22, 32]),
              ("leakage", "validation"): ("warning", 1, [3]),
              ("unseen_labels", "validation"): ("error", 1, [6])}
    assert {key: (f["severity"], f["count"], f["lines"]) for key, f in found.items()} == expect
    assert "'0' (38)" in found["imbalance", "train"]["message"] and "7.6 to 1" in found["imbalance", "train"]["message"]
    assert "'2'" in found["unseen_labels", "validation"]["message"]
    tokens = result.json()["splits"]["train"]["tokens"]
    assert tokens["truncated"] == 2 and tokens["max_length_for_99"] > 24
    assert result.json()["splits"]["train"]["labels"]["counts"] == {"0": 38, "1": 5}


def test_plain_output_and_strict(flawed_classification, tmp_path):
    recipe, _ = flawed_classification
    plain = run_cli("doctor", str(recipe))
    assert plain.exit_code == 3
    assert "error: [unseen_labels] validation: 1 row has a label training never shows: '2' (1) (first at line 6)" \
        in plain.stdout
    assert "1 error(s), 6 warning(s)" in plain.stdout
    # Without the bad validation label only warnings are left: exit 0, and 3 with --strict.
    warnings_only = ["--set", f"data.validation={Path(recipe).parent / 'train.csv'}"]
    assert run_cli("doctor", str(recipe), *warnings_only).exit_code == 0
    strict = run_cli("doctor", str(recipe), *warnings_only, "--strict", "--json")
    assert strict.exit_code == 3 and strict.json()["errors"] == 0 and strict.json()["exit_code"] == 3


def test_every_unreadable_split_is_named_at_once(tiny_models, tmp_path):
    """A refused training file does not hide the other splits: each missing or malformed file is
    its own error in one report (they are read without labels, which train would have given)."""
    missing = tmp_path / "no-such-validation.csv"
    broken = tmp_path / "test.csv"
    broken.write_text("sentence,label\n\"an unclosed quote,1\n")
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_models["bert"], tmp_path / "no-such-train.csv", missing,
                          tmp_path / "out", data={"test": str(broken)})
    for args in (("doctor", str(recipe)), ("finetune", str(recipe), "--dry-run")):
        result = run_cli(*args)
        assert result.exit_code == 3, result.stderr
        errors = [line for line in result.stdout.splitlines() if line.startswith("error: [read]")]
        assert [line.split()[2] for line in errors] == ["train:", "validation:", "test:"], result.stdout
        assert "no-such-train.csv does not exist" in errors[0] and "no-such-validation.csv does not exist" in errors[1]
        assert "test.csv" in errors[2]
        assert "3 error(s)" in result.stdout
    assert not (tmp_path / "out").exists()


def write_conll(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    path.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in s) for s in sentences) + "\n")
    return path


def test_ner_iob_problems_entity_counts_and_unseen_types(tiny_models, tmp_path):
    ok = [("Anna", "B-PER"), ("went", "O"), ("to", "O"), ("Rome", "B-LOC")]
    train = write_conll(tmp_path / "train.txt", [
        ok,                                                  # lines 1-4
        [("Bob", "B-PER"), ("Lee", "I-PER"), ("in", "O"), ("Oslo", "B-LOC")],   # lines 6-9
        [("he", "O"), ("saw", "O"), ("Paris", "I-LOC")],     # lines 11-13: I- after O (line 13)
        [("Carl", "B-PER"), ("Berlin", "I-LOC")],            # lines 15-16: I-LOC after B-PER (line 16)
        [("Dora", "B-PER"), ("ran", "O")],                   # lines 18-19
    ])
    valid = write_conll(tmp_path / "valid.txt", [ok, [("Acme", "B-ORG"), ("won", "O")]])  # ORG at line 6
    recipe = build_recipe(tmp_path / "r.yaml", "ner", tiny_models["bert"], tmp_path / "runs",
                          {"train": str(train), "validation": str(valid), "max_length": 32})

    result = run_cli("doctor", str(recipe), "--json")

    assert result.exit_code == 3, result.stderr
    found = findings(result)
    assert (found["iob", "train"]["severity"], found["iob", "train"]["count"], found["iob", "train"]["lines"]) == \
        ("warning", 2, [13, 16])
    unseen = found["unseen_labels", "validation"]
    assert (unseen["severity"], unseen["count"], unseen["lines"]) == ("error", 1, [6]) and "'ORG'" in unseen["message"]
    # the reader's own refusal of ORG is not repeated once the doctor has named it
    assert ("read", "validation") not in found
    entities = result.json()["splits"]["train"]["entities"]["counts"]
    assert entities == {"PER": 4, "LOC": 4}


def test_qa_misaligned_answers_and_unanswerable_share(tiny_models, tmp_path):
    context = "The tower was built in 1889 in Paris by Gustave Eiffel."
    rows = [{"id": f"q{i}", "question": "When was the tower built?", "context": context + f" Note {i}.",
             "answers": {"text": ["1889"], "answer_start": [context.index("1889")]}} for i in range(8)]
    rows[2]["answers"]["answer_start"] = [5]  # line 3: the text is not at 5
    rows[6]["answers"] = {"text": ["Eiffel"], "answer_start": [0]}  # line 7
    rows[4]["answers"] = {"text": [], "answer_start": []}  # line 5: unanswerable
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = build_recipe(tmp_path / "r.yaml", "qa", tiny_models["bert"], tmp_path / "runs",
                          {"train": str(train), "validation": None, "max_length": 64, "doc_stride": 16})

    result = run_cli("doctor", str(recipe), "--json")

    assert result.exit_code == 3, result.stderr
    found = findings(result)
    aligned = found["answer_alignment", "train"]
    assert (aligned["severity"], aligned["count"], aligned["lines"]) == ("error", 2, [3, 7])
    unanswerable = found["unanswerable", "train"]
    assert (unanswerable["severity"], unanswerable["count"], unanswerable["lines"]) == ("error", 1, [5])
    assert result.json()["splits"]["train"]["unanswerable_share"] == 0.125

    # SQuAD v2.0 data with the answers realigned: the same file reads, unanswerable questions are
    # figures, and the moved answers are warnings; the windows each question makes are counted.
    ok = run_cli("doctor", str(recipe), "--json", "--set", "data.version_2_with_negative=true",
                 "--set", "data.realign_answers=true")
    assert ok.exit_code == 0, ok.stdout + ok.stderr
    moved = findings(ok)["answer_alignment", "train"]
    assert (moved["severity"], moved["count"], moved["lines"]) == ("warning", 2, [3, 7])
    figures = ok.json()["splits"]["train"]
    assert figures["unanswerable"] == 1 and figures["windows"] >= 8 and figures["windows_per_question"] >= 1


def test_causal_lm_packing_figures(tiny_models, tmp_path):
    from transformers import AutoTokenizer

    texts = [sentence(i, words=3 + i % 9) for i in range(30)]
    texts[7] = " "  # line 8
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    recipe = build_recipe(tmp_path / "r.yaml", "causal-lm", tiny_models["gpt2"], tmp_path / "runs",
                          {"train": str(train), "validation": None, "max_length": 16, "skip_empty": True})

    result = run_cli("doctor", str(recipe), "--json")

    assert result.exit_code == 0, result.stderr
    tok = AutoTokenizer.from_pretrained(tiny_models["gpt2"])
    lengths = [len(tok(t)["input_ids"]) + 1 for t in texts if t.strip()]  # each example ends in EOS
    packing = result.json()["splits"]["train"]["packing"]
    assert packing["examples"] == 29 and packing["tokens"] == sum(lengths)
    assert packing["blocks"] == -(-sum(lengths) // 16)
    assert packing["tokens_cut_unpacked"] == sum(max(0, n - 16) for n in lengths)
    assert packing["padding_saved"] == 29 * 16 - sum(min(n, 16) for n in lengths) - (packing["blocks"] * 16 - sum(lengths))
    assert packing["steps_per_epoch_packed"] == -(-packing["blocks"] // 8) and packing["on"] is False
    empty = findings(result)["empty_text", "train"]
    assert (empty["count"], empty["lines"]) == (1, [8])


def test_finetune_dry_run_prints_the_plan_without_weights_or_run_dir(tiny_models, tmp_path):
    model = tmp_path / "bert-config-only"
    shutil.copytree(tiny_models["bert"], model)
    for weights in model.glob("*.safetensors"):
        weights.unlink()  # a dry run reads config.json and the tokenizer, never the weights
    train = write_csv(tmp_path / "train.csv", clean_rows(40))
    valid = write_csv(tmp_path / "valid.csv", clean_rows(10, offset=1000))
    out_dir = tmp_path / "runs" / "x"
    recipe = write_recipe(tmp_path / "r.yaml", model, train, valid, out_dir,
                          train={"epochs": 3, "warmup_ratio": 0.1, "gradient_accumulation_steps": 2})

    result = run_cli("finetune", str(recipe), "--dry-run", "--device", "cpu")

    assert result.exit_code == 0, result.stderr
    assert "plan: 3 steps an epoch, 9 in total (1 warmup)" in result.stdout
    assert "effective batch 16" in result.stdout and "precision fp32" in result.stdout
    assert f"plan: output {out_dir} (fresh): ok" in result.stdout
    assert not out_dir.exists() and not (tmp_path / "runs").exists()

    as_json = run_cli("finetune", str(recipe), "--dry-run", "--device", "cpu", "--json")
    plan = as_json.json()["plan"]
    assert (plan["steps_per_epoch"], plan["total_steps"], plan["warmup_steps"], plan["processes"]) == (3, 9, 1, 1)
    assert as_json.json()["findings"] == [] and plan["refused"] is None

    # An existing run directory: the plan says finetune would refuse it, exit 2 as finetune's would.
    out_dir.mkdir(parents=True)
    (out_dir / "notes.txt").write_text("mine")
    refused = run_cli("finetune", str(recipe), "--dry-run", "--device", "cpu")
    assert refused.exit_code == 2 and "refused: Run directory" in refused.stdout
    assert sorted(p.name for p in out_dir.iterdir()) == ["notes.txt"]


def test_dry_run_checks_the_model_config(tiny_models, tmp_path):
    """A checkpoint that cannot do the task is refused from config.json, as finetune refuses it."""
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": sentence(i)}) + "\n" for i in range(8)))
    recipe = build_recipe(tmp_path / "r.yaml", "causal-lm", tiny_models["t5"], tmp_path / "runs",
                          {"train": str(train), "validation": None, "max_length": 16})
    dry = run_cli("finetune", str(recipe), "--dry-run", "--device", "cpu")
    assert dry.exit_code == 2, dry.stdout + dry.stderr  # finetune's own code for this recipe
    assert len(error_lines(dry.stderr)) == 1 and "task causal-lm needs a decoder-only" in dry.stderr
    assert not (tmp_path / "runs").exists()

    # A fine-tuned 3-label classifier given 2-label data: transformers would refuse its head.
    from transformers import AutoConfig, BertForSequenceClassification

    classifier = tmp_path / "classifier"
    shutil.copytree(tiny_models["bert"], classifier)
    BertForSequenceClassification(AutoConfig.from_pretrained(classifier, num_labels=3)).save_pretrained(classifier)
    data = write_csv(tmp_path / "train.csv", clean_rows(16))
    recipe = write_recipe(tmp_path / "c.yaml", classifier, data, None, tmp_path / "runs")
    head = run_cli("finetune", str(recipe), "--dry-run", "--device", "cpu")
    assert head.exit_code == 5 and len(error_lines(head.stderr)) == 1
    assert "already has a 3-label head" in head.stderr and "the data has 2 labels (0, 1)" in head.stderr
    # finetune itself refuses it the same way, before the run starts (it used to fail after, exit 1).
    real = run_cli("finetune", str(recipe), "--device", "cpu")
    assert real.exit_code == 5 and "already has a 3-label head" in real.stderr, real.stderr
    assert not (tmp_path / "runs").exists()
