"""train.min_learning_rate: the linear / cosine decay ends there (nanoGPT's min_lr), not at 0."""

import pytest

from llmctl.errors import RecipeError
from llmctl.tasks.recipe import load_recipe
from llmctl.train.optim import lr_factor

RECIPE = """task: causal-lm
model:
  config: {model_type: gpt2, n_layer: 1}
  tokenizer: {train: char}
data:
  train: t.txt
  validation: v.txt
train:
  learning_rate: 1.0e-3
  min_learning_rate: %s
  lr_scheduler: cosine
"""


def test_cosine_decays_to_the_floor(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE % "1.0e-4")
    cfg = load_recipe(str(path)).train
    floor = cfg.min_learning_rate / cfg.learning_rate
    assert lr_factor(0, 2000, 100, "cosine", floor) == 0.0
    assert lr_factor(100, 2000, 100, "cosine", floor) == pytest.approx(1.0)
    assert lr_factor(1050, 2000, 100, "cosine", floor) == pytest.approx(0.55)  # halfway: floor + (1 - floor) / 2
    assert lr_factor(2000, 2000, 100, "cosine", floor) == pytest.approx(0.1)
    assert lr_factor(2000, 2000, 100, "linear", floor) == pytest.approx(0.1)


def test_a_floor_above_the_peak_is_refused(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE % "2.0e-3")
    with pytest.raises(RecipeError, match="min_learning_rate 0.002 is above learning_rate 0.001"):
        load_recipe(str(path))
