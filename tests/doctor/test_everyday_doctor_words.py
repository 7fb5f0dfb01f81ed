"""Issue 27 item 23, what the doctor and the dry run say: label names (not ids) when
data.label_names names the file's integer labels, packing said in words ("on"), and the plural of
"optimizer step" agreeing with the count."""

from helpers import build_recipe, run_cli, sentiment_rows, write_csv, write_jsonl, write_recipe
from llmctl.errors import EXIT_OK


def lines_of(stdout: str, split: str, figure: str) -> str:
    found = [line for line in stdout.splitlines() if line.split()[:2] == [split, figure]]
    assert len(found) == 1, stdout
    return found[0].split(None, 2)[2]


def test_doctor_shows_label_names_for_integer_labels(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(8))  # labels 1 / 0
    valid = write_csv(tmp_path / "valid.csv", sentiment_rows(6)[::-1])
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, valid, tmp_path / "run",
                          data={"label_names": ["negative", "positive"]}, train={"batch_size": 8})
    result = run_cli("doctor", str(recipe))
    assert result.exit_code == EXIT_OK, result.stderr
    assert lines_of(result.stdout, "train", "labels") == "negative 4, positive 4  (most/least 1)"
    assert lines_of(result.stdout, "validation", "labels") == "negative 3, positive 3  (most/least 1)"
    assert "one epoch: 1 optimizer step (" in result.stdout  # one step, singular
    as_json = run_cli("doctor", str(recipe), "--json").json()
    assert as_json["splits"]["train"]["labels"]["counts"] == {"negative": 4, "positive": 4}


def test_dry_run_says_packing_on_in_words(tiny_models, tmp_path):
    texts = write_jsonl(tmp_path / "t.jsonl", [{"text": f"the movie number {i} was great and i liked it"}
                                              for i in range(12)])
    recipe = build_recipe(tmp_path / "lm.yaml", "causal-lm", tiny_models["gpt2"], tmp_path / "run",
                          {"train": str(texts), "validation": None, "packing": True, "max_length": 16},
                          train={"metric_for_best": None})
    result = run_cli("finetune", str(recipe), "--dry-run")
    assert result.exit_code == EXIT_OK, result.stderr
    packing = lines_of(result.stdout, "train", "packing")
    assert packing.startswith("on, examples 12, ") and " on 1" not in packing and "True" not in packing
    steps = int(lines_of(result.stdout, "train", "packing").split("steps_per_epoch_packed ")[1].split(",")[0])
    assert f"one epoch: {steps} optimizer step{'' if steps == 1 else 's'} (" in result.stdout
