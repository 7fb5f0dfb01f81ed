"""Issue 27 item 12: messages that misled, each checked through the CLI as the user meets it."""

import json

from helpers import error_lines, run_cli, sentiment_rows, write_csv, write_recipe
from llmctl.errors import EXIT_MODEL, EXIT_USAGE


def test_recipe_problems_are_listed_in_file_order(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(8))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"task: classification\ntrain:\n  epochs: 0\nmodel:\n  name_or_path: {tiny_models['bert']}\n"
                      f"data:\n  train: {train}\n  max_lenght: 32\noutput_dir: {tmp_path / 'run'}\n")
    result = run_cli("finetune", str(recipe), "--dry-run")
    assert result.exit_code == EXIT_USAGE
    problems = [line.strip() for line in result.stderr.splitlines() if line.startswith("  ")]
    assert [p.split(": ", 1)[0] for p in problems] == [f"{recipe}:3", f"{recipe}:8"], result.stderr


def test_validation_null_by_set_says_how_to_reset_the_keys_it_strands(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(8))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, train, tmp_path / "run",
                          train={"metric_for_best": "accuracy"})
    result = run_cli("finetune", str(recipe), "--set", "data.validation=null", "--dry-run")
    assert result.exit_code == EXIT_USAGE
    assert "or drop train.metric_for_best (--set train.metric_for_best=null)" in result.stderr, result.stderr


def test_empty_model_flag_is_named_as_such(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(8))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, None, tmp_path / "run")
    result = run_cli("finetune", str(recipe), "--model", "", "--dry-run")
    assert result.exit_code == EXIT_USAGE
    assert error_lines(result.stderr) == ["error: --model is empty. Give --model a value, or leave it out (an unset "
                                          "shell variable expands to nothing)."]


def test_a_folder_holding_only_a_gguf_file_says_to_pass_the_file(tmp_path):
    folder = tmp_path / "smol"
    folder.mkdir()
    (folder / "model-q8.gguf").write_bytes(b"GGUF")
    result = run_cli("generate", str(folder), "hello")
    assert result.exit_code == EXIT_MODEL
    assert error_lines(result.stderr) == [f"error: {folder} holds model-q8.gguf but no config.json: a GGUF model is "
                                          f"named by its file. Pass the file itself, e.g. {folder / 'model-q8.gguf'}."]
