"""Recipes are parsed with a YAML loader that refuses alias bombs ("billion laughs") before
anything expands them, while ordinary anchors and merge keys keep working."""

import pytest

from helpers import REPO, run_cli, sentiment_rows, write_csv
from llmctl.tasks.recipe import load_recipe
from llmctl.errors import EXIT_MODEL, EXIT_USAGE, RecipeError


def laughs(levels: int) -> str:
    """A recipe whose every level lists the previous one nine times: 9**levels strings."""
    lines = ["task: classification", 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_billion_laughs_recipe_is_refused_with_one_line(tmp_path):
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(laughs(9))  # 9**10 strings: ~3.5e9 once expanded
    result = run_cli("finetune", str(recipe), "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == EXIT_USAGE, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {recipe}: refusing this YAML: its anchors and aliases expand to more than 100,000 "
                      "values (a 'billion laughs' file?). Write the values out, or use fewer nested aliases."]
    assert not (tmp_path / "run").exists()


def test_many_aliases_or_a_bomb_in_set_are_refused_too(tmp_path):
    recipe = tmp_path / "aliases.yaml"
    recipe.write_text("task: classification\nx: &x 1\nmany: [" + ", ".join(["*x"] * 1001) + "]\n")
    with pytest.raises(RecipeError, match=f"{recipe}: refusing this YAML: it uses more than 1,000 aliases"):
        load_recipe(str(recipe))
    value = "{" + laughs(9).replace("\n", ", ").replace("task: classification, ", "").rstrip(", ") + "}"
    with pytest.raises(RecipeError, match="--set 'data.bomb': refusing this YAML value: its anchors and aliases expand"):
        load_recipe(str(REPO / "llmctl/recipes/classification/sst2-bert.yaml"), [f"data.bomb={value}"])


def test_recipe_with_a_few_anchors_and_aliases_still_loads(tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(8))
    recipe = tmp_path / "anchors.yaml"
    recipe.write_text(f"""# llmctl finetune {recipe}
task: classification
model: {{name_or_path: never-loaded}}
data:
  train: &file {train}
  validation: *file
  max_length: 16
train:
  batch_size: &batch 4
  eval_batch_size: *batch
  <<: {{precision: fp32, epochs: 1}}
output_dir: {tmp_path / "run"}
""")
    loaded = load_recipe(str(recipe))
    assert loaded.data.validation == loaded.data.train == str(train)
    assert (loaded.train.batch_size, loaded.train.eval_batch_size, loaded.train.precision) == (4, 4, "fp32")
    # The CLI parses it too: it gets as far as loading the (absent) model.
    result = run_cli("finetune", str(recipe))
    assert result.exit_code == EXIT_MODEL, result.stderr
    assert "never-loaded" in result.stderr and "YAML" not in result.stderr
