"""Safety rails: no pickle loading anywhere, NaN losses stop the run, checkpoints hold no pickle."""

import re
import shutil

from helpers import REPO, run_cli, sentiment_rows, write_csv, write_recipe
from llmctl.errors import EXIT_RUNTIME


def test_no_torch_load_without_weights_only():
    offenders = []
    for path in (REPO / "llmctl").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"torch\.load\(", line) and "weights_only=True" not in line:
                offenders.append(f"{path}:{number}")
            if re.search(r"\bpickle\.loads?\(", line):
                offenders.append(f"{path}:{number}")
    assert not offenders, offenders


def test_nan_loss_stops_with_the_step_named(tiny_models, tmp_path):
    from safetensors.torch import load_file, save_file

    model = tmp_path / "nan-model"
    shutil.copytree(tiny_models["bert"], model)
    weights = load_file(str(model / "model.safetensors"))
    name = next(k for k in weights if k.endswith("word_embeddings.weight"))
    weights[name][:] = float("nan")
    save_file(weights, str(model / "model.safetensors"), metadata={"format": "pt"})
    train = write_csv(tmp_path / "train.csv", sentiment_rows(16))
    recipe = write_recipe(tmp_path / "r.yaml", model, train, None, tmp_path / "run")
    result = run_cli("finetune", str(recipe))
    assert result.exit_code == EXIT_RUNTIME
    assert "Loss became nan at step 1" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "model").exists()  # no model saved from a diverged run


def test_checkpoints_are_safetensors_and_json_only(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(16))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, None, tmp_path / "run",
                          train={"epochs": 2, "save_every": 1, "keep_checkpoints": 1})
    assert run_cli("finetune", str(recipe)).exit_code == 0
    checkpoints = list((tmp_path / "run" / "checkpoints").iterdir())
    assert len(checkpoints) == 1  # keep_checkpoints prunes older ones
    suffixes = {p.suffix for p in checkpoints[0].iterdir()}
    assert suffixes <= {".safetensors", ".json"}, suffixes
