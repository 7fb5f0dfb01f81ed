"""Issue 27 item 6: multiple-choice truncation is reported (a count in finetune's log, a doctor
warning with each example's longest choice before truncation) and the training features are
cached like other tasks' (a second run is a cache hit that still tells the truncation)."""

import json

from helpers import ONE_THREAD, build_recipe, run_cli
from llmctl.errors import EXIT_OK


def swag(n: int) -> list[dict]:
    ends = ["opens the heavy wooden door", "eats a sandwich", "reads a long book slowly", "plays the piano"]
    return [{"sent1": "Alice wants to do something today.", "sent2": "Alice",
             **{f"ending{k}": ends[(i + k) % 4] for k in range(4)}, "label": i % 4} for i in range(n)]


def test_truncation_is_counted_told_and_cached(tiny_models, tmp_path):
    train = tmp_path / "swag.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in swag(8)))
    recipe = build_recipe(tmp_path / "r.yaml", "multiple-choice", tiny_models["bert"], tmp_path / "run",
                          {"train": str(train), "validation": None, "second_column": "sent2", "max_length": 8},
                          train={"max_steps": 1})
    doctor = run_cli("doctor", str(recipe), "--json", env=ONE_THREAD)
    assert doctor.exit_code == EXIT_OK, doctor.stderr[-2000:]
    tokens = doctor.json()["splits"]["train"]["tokens"]
    assert tokens["max_length"] == 8 and tokens["truncated"] == 8 and tokens["max"] > 8
    assert any(f["check"] == "truncation" for f in doctor.json()["findings"]), doctor.json()["findings"]
    told = f"{train}: 8 example(s) longer than data.max_length 8 tokens were cut"
    first = run_cli("finetune", str(recipe), "--json", env=ONE_THREAD)
    assert first.exit_code == EXIT_OK, first.stderr[-2000:]
    assert told in first.stderr
    again = run_cli("finetune", str(recipe), "--overwrite", "--json", env=ONE_THREAD)
    assert again.exit_code == EXIT_OK, again.stderr[-2000:]
    assert again.json()["data"]["cache"] == "hit" and told in again.stderr
    assert again.json()["metrics"] == first.json()["metrics"]
