"""The recipe contract: every shipped recipe validates, and bad recipes fail clearly."""

from pathlib import Path

import pytest

from helpers import REPO, run_cli
from llmctl.config.load import list_recipes, parse_override, resolve_recipe
from llmctl.tasks.recipe import load_recipe
from llmctl.errors import EXIT_USAGE, RecipeError
from llmctl.tasks import TASKS

RECIPES = REPO / "llmctl" / "recipes"  # package data: an installed wheel ships them (tests/project/test_packaging.py)
SHIPPED = sorted(RECIPES.rglob("*.yaml"))


def short_name(path: Path) -> str:
    return path.relative_to(RECIPES).with_suffix("").as_posix()


def test_ships_the_promised_recipes():
    names = set(list_recipes())
    for name in ("sst2-bert", "mrpc-bert", "stsb-bert", "cola-bert", "sst2-gpt2", "sst2-t5"):
        assert f"classification/{name}" in names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_recipe_validates_and_opens_with_its_command(path: Path):
    first = path.read_text().splitlines()[0]
    recipe = load_recipe(str(path))
    # The command names the recipe by its short name, which works from any folder and from an installed
    # wheel (a repository path would not), and that name resolves to this very file.
    assert resolve_recipe(short_name(path)) == path
    if recipe.zero_shot is not None:  # scored without training: `llmctl eval MODEL --recipe NAME`
        assert first == f"# llmctl eval {recipe.model.name_or_path} --recipe {short_name(path)}"
    else:
        assert (first + " ").startswith(f"# llmctl finetune {short_name(path)} "), first
    assert recipe.task in TASKS
    assert recipe.output_dir.startswith("runs/")


def test_short_names_resolve():
    assert load_recipe("sst2-bert").data.config == "sst2"
    assert load_recipe("classification/mrpc-bert").data.text_columns == ["sentence1", "sentence2"]


def write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


BASE = """task: classification
model:
  name_or_path: some/model
data:
  train: t.csv
  validation: v.csv
"""


def test_yaml_scientific_notation_as_users_write_it(tmp_path):
    # PyYAML reads 5e-5 (no dot) as a string; the schema must still take it as a number.
    recipe = load_recipe(str(write(tmp_path, BASE + "train:\n  learning_rate: 5e-5\n")))
    assert recipe.train.learning_rate == pytest.approx(5e-5)


def test_unknown_keys_suggest_and_all_problems_listed_with_lines(tmp_path):
    path = write(tmp_path, BASE + "train:\n  learnin_rate: 3e-5\n  epochs: many\n  batch_size: -1\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(str(path))
    text = str(info.value)
    assert "3 problems" in text
    assert f"{path}:8: train.learnin_rate: unknown key; did you mean 'learning_rate'?" in text
    assert f"{path}:9: train.epochs" in text and "'many'" in text
    assert f"{path}:10: train.batch_size" in text


def test_unknown_task_and_missing_model(tmp_path):
    with pytest.raises(RecipeError, match="did you mean 'classification'"):
        load_recipe(str(write(tmp_path, "task: clasification\n")))
    with pytest.raises(RecipeError, match="model: required key is missing"):
        load_recipe(str(write(tmp_path, "task: classification\ndata: {}\n")))


def test_set_overrides_parse_yaml_values_and_are_named_in_errors(tmp_path):
    assert parse_override("data.text_columns=[a, b]") == (["data", "text_columns"], ["a", "b"])
    assert parse_override("data.test=null") == (["data", "test"], None)
    path = write(tmp_path, BASE)
    recipe = load_recipe(str(path), ["train.learning_rate=3e-5", "data.max_train_samples=100"])
    assert recipe.train.learning_rate == pytest.approx(3e-5) and recipe.data.max_train_samples == 100
    with pytest.raises(RecipeError, match=r"--set train.seeed: unknown key; did you mean 'seed'"):
        load_recipe(str(path), ["train.seeed=1"])


def test_invalid_yaml_names_line_and_column(tmp_path):
    with pytest.raises(RecipeError, match=r"r.yaml:3:\d+: invalid YAML"):
        load_recipe(str(write(tmp_path, "task: classification\nmodel:\n  name: a: b\n")))


def test_cli_recipe_errors_exit_2_without_traceback(tmp_path):
    path = write(tmp_path, BASE + "train:\n  epoch: 3\n")
    result = run_cli("finetune", str(path))
    assert result.exit_code == EXIT_USAGE
    assert "did you mean 'epochs'" in result.stderr
    assert "Traceback" not in result.stderr
    missing = run_cli("finetune", "sst2-bertt")
    assert missing.exit_code == EXIT_USAGE
    assert "Recipe 'sst2-bertt' not found" in missing.stderr and "llmctl recipes list" in missing.stderr


def test_recipes_commands(tmp_path):
    listed = run_cli("recipes", "list")
    assert listed.exit_code == 0 and "classification/sst2-bert" in listed.stdout
    shown = run_cli("recipes", "show", "sst2-gpt2")
    assert shown.stdout.startswith("# llmctl finetune classification/sst2-gpt2\n")
    copied = run_cli("recipes", "copy", "sst2-t5", str(tmp_path))
    assert copied.exit_code == 0 and (tmp_path / "sst2-t5.yaml").is_file()
    again = run_cli("recipes", "copy", "sst2-t5", str(tmp_path))
    assert again.exit_code == EXIT_USAGE and "already exists" in again.stderr
