"""Bad input: one clear line naming the file/column/key and the fix, a documented exit code,
no traceback, and (where possible) before any model is loaded."""


import pytest

from helpers import run_cli, sentiment_rows, write_csv, write_recipe
from llmctl.errors import EXIT_DATA, EXIT_MODEL


def finetune(tmp_path, model, train, valid, **extra):
    recipe = write_recipe(tmp_path / "r.yaml", model, train, valid, tmp_path / "run", **extra)
    result = run_cli("finetune", str(recipe))
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture
def files(tmp_path):
    return (write_csv(tmp_path / "train.csv", sentiment_rows(8, string_labels=True)),
            write_csv(tmp_path / "valid.csv", sentiment_rows(4, string_labels=True)))


def test_missing_file(tmp_path, files):
    result = finetune(tmp_path, "never-loaded", tmp_path / "nope.csv", files[1])
    assert result.exit_code == EXIT_DATA
    assert f"data.train: file {tmp_path / 'nope.csv'} does not exist" in result.stderr
    assert not (tmp_path / "run").exists()  # nothing created for a run that never started


def test_unknown_column_lists_existing(tmp_path, files):
    result = finetune(tmp_path, "never-loaded", *files, data={"text_columns": ["sentense"]})
    assert result.exit_code == EXIT_DATA
    assert "column 'sentense' is not in" in result.stderr
    assert "its columns are: sentence, label" in result.stderr and "Did you mean 'sentence'?" in result.stderr


def test_label_outside_known_set_names_line(tmp_path, files):
    rows = sentiment_rows(4, string_labels=True)
    rows[2]["label"] = "neutral"
    valid = write_csv(tmp_path / "bad.csv", rows)
    result = finetune(tmp_path, "never-loaded", files[0], valid)
    assert result.exit_code == EXIT_DATA
    assert f"{valid}:4: label 'neutral' is not one of the known labels (negative, positive)" in result.stderr


def test_empty_label_in_validation_names_line(tmp_path, files):
    valid = tmp_path / "bad.csv"
    valid.write_text("sentence,label\na fine film,positive\na dull film,\n")
    result = finetune(tmp_path, "never-loaded", files[0], valid)
    assert result.exit_code == EXIT_DATA
    assert f"{valid}:3: the label is empty" in result.stderr


def test_empty_split(tmp_path, files):
    empty = tmp_path / "empty.csv"
    empty.write_text("sentence,label\n")
    result = finetune(tmp_path, "never-loaded", files[0], empty)
    assert result.exit_code == EXIT_DATA
    assert "has no rows" in result.stderr and "data.validation" in result.stderr


def test_non_numeric_regression_target(tmp_path):
    rows = [{"sentence": "a", "label": 0.5}, {"sentence": "b", "label": 1.5}, {"sentence": "c", "label": "high"}]
    train = write_csv(tmp_path / "train.csv", rows)
    result = finetune(tmp_path, "never-loaded", train, None, data={"regression": True})
    assert result.exit_code == EXIT_DATA
    assert f"{train}:4: regression target 'high' is not a number" in result.stderr


def test_missing_local_model(tmp_path, files):
    result = finetune(tmp_path, tmp_path / "no-model", *files)
    assert result.exit_code == EXIT_MODEL
    assert "does not exist" in result.stderr


def test_hub_unreachable_fails_fast_and_points_to_local_paths(tmp_path, files):
    # No HF_HUB_OFFLINE, and an endpoint where nothing listens: the probe must fail in seconds.
    recipe = write_recipe(tmp_path / "r.yaml", "bert-base-uncased", *files, tmp_path / "run")
    result = run_cli("finetune", str(recipe), env={"HF_HUB_OFFLINE": None, "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert result.exit_code == EXIT_MODEL
    assert "Hub is unreachable" in result.stderr and "Use a local model directory" in result.stderr


def test_hub_id_offline_mode_names_cache(tmp_path, files):
    result = finetune(tmp_path, "someone/not-cached-model", *files)
    assert result.exit_code == EXIT_MODEL
    assert "not in the local cache and HF_HUB_OFFLINE is set" in result.stderr


def test_pickle_only_weights_refused(tmp_path, files, tiny_models):
    import shutil

    model = tmp_path / "pickled"
    shutil.copytree(tiny_models["bert"], model)
    (model / "model.safetensors").unlink()
    (model / "pytorch_model.bin").write_bytes(b"not really a pickle")
    result = finetune(tmp_path, model, *files)
    assert result.exit_code == EXIT_MODEL
    assert "only pickle weights" in result.stderr and "allow_pickle_weights" in result.stderr


def test_custom_code_checkpoint_refused_without_trust_remote_code(tmp_path, files, tiny_models):
    import json
    import shutil

    model = tmp_path / "custom"
    shutil.copytree(tiny_models["bert"], model)
    config = json.loads((model / "config.json").read_text())
    config |= {"model_type": "my-custom-bert", "auto_map": {"AutoConfig": "modeling_custom.CustomConfig"}}
    (model / "config.json").write_text(json.dumps(config))
    (model / "modeling_custom.py").write_text("raise SystemExit('custom code must not run')\n")
    result = finetune(tmp_path, model, *files)
    assert result.exit_code == EXIT_MODEL
    assert "needs custom code" in result.stderr and "trust_remote_code: true" in result.stderr
    assert "custom code must not run" not in result.stderr
