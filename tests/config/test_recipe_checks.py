"""User-reported recipe holes: values that validated but broke (or were ignored) later.
Each is driven through the CLI on real files and must fail before any model loads
("never-loaded" is not a model), leaving no run directory behind."""

import pytest

from helpers import run_cli, sentiment_rows, write_csv, write_recipe
from llmctl.config.load import check_recipe_task
from llmctl.tasks.recipe import load_recipe
from llmctl.data.sources import read_table, row_location
from llmctl.errors import EXIT_DATA, EXIT_USAGE, RecipeError


@pytest.fixture
def files(tmp_path):
    return (write_csv(tmp_path / "train.csv", sentiment_rows(8, string_labels=True)),
            write_csv(tmp_path / "valid.csv", sentiment_rows(4, string_labels=True)))


def refused(tmp_path, *args, recipe=None, **extra):
    """Run finetune on a recipe that must be refused (exit 2) before anything is created."""
    recipe = recipe or write_recipe(tmp_path / "r.yaml", "never-loaded", *extra.pop("files"), tmp_path / "run", **extra)
    result = run_cli("finetune", str(recipe), *args)
    assert result.exit_code == EXIT_USAGE, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
    return result.stderr


def test_negative_or_huge_seed_refused_with_the_range(tmp_path, files):
    for seed in ("-1", str(2**32)):
        err = refused(tmp_path, "--seed", seed, files=files)
        assert f"--set train.seed: must be between 0 and {2**32 - 1}" in err and f"(got {seed})" in err
    assert load_recipe(str(tmp_path / "r.yaml"), ["train.seed=0"]).train.seed == 0


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "nan", "1e999"])
def test_inf_and_nan_refused_in_the_file_and_with_set(tmp_path, files, value):
    path = write_recipe(tmp_path / "r.yaml", "never-loaded", *files, tmp_path / "run")
    path.write_text(path.read_text().replace("learning_rate: 0.001", f"learning_rate: {value}"))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "learning_rate" in text)
    err = refused(tmp_path, recipe=path)
    assert f"r.yaml:{line}: train.learning_rate: Input should be a finite number" in err
    err = refused(tmp_path, "--set", f"train.warmup_ratio={value}", files=files)
    assert "--set train.warmup_ratio: Input should be a finite number" in err


def test_scalar_for_a_section_is_an_error_not_a_reset(tmp_path, files):
    for section in ("train", "data", "model", "zero_shot"):
        err = refused(tmp_path, "--set", f"{section}=3", files=files)
        assert f"error: --set {section}=3: {section} is a section of keys, not a single value." in err
        assert f"--set {section}.KEY=VALUE" in err
    # A later key cannot resurrect the section the scalar destroyed, either.
    err = refused(tmp_path, "--set", "train=3", "--set", "train.seed=1", files=files)
    assert "train is a section of keys" in err


def test_set_does_not_descend_into_a_value(tmp_path, files):
    err = refused(tmp_path, "--set", "train.epochs.x=1", files=files)
    assert ("error: --set train.epochs.x=1: train.epochs is 1, which has no keys to set. "
            "Use --set train.epochs=VALUE.") in err
    err = refused(tmp_path, "--set", "data.text_columns.first=a", files=files)
    assert "data.text_columns is ['sentence']" in err
    # Null sections still take keys (zero_shot: null in a recipe is how most recipes say "none").
    path = write_recipe(tmp_path / "z.yaml", "never-loaded", *files, tmp_path / "run", zero_shot=None)
    recipe = load_recipe(str(path), ["zero_shot.template='Review: {sentence}'",
                                     "zero_shot.verbalizers={a: ' x', b: ' y'}"])
    assert recipe.zero_shot.columns() == ["sentence"]


@pytest.mark.parametrize("key,value", [("early_stopping_patience", 2), ("metric_for_best", "f1"),
                                       ("greater_is_better", False)])
def test_keys_that_need_validation_are_refused_without_it(tmp_path, files, key, value):
    path = write_recipe(tmp_path / "r.yaml", "never-loaded", files[0], None, tmp_path / "run", train={key: value})
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith(key))
    err = refused(tmp_path, recipe=path)
    assert (f"r.yaml:{line}: train.{key} needs data.validation, which is null; set data.validation to a split "
            f"or file, or drop train.{key}") in err
    # The same through --set on a recipe that had validation data.
    err = refused(tmp_path, "--set", "data.validation=null", "--set", f"train.{key}={value}", files=files)
    assert f"--set train.{key} needs data.validation" in err


def test_header_row_with_column_names_is_skipped_loudly(tmp_path, files):
    rows = sentiment_rows(8)  # integer labels: the header must not turn them into strings
    rows[5]["label"] = 7
    train = write_csv(tmp_path / "headed.csv", rows)
    frame = read_table(train, "data.train", [" sentence", "label "])
    assert len(frame) == 8 and list(frame["label"])[:2] == [1, 0]
    # Line numbers in later messages still count the header line.
    assert row_location(str(train), 5, has_header=False) == f"{train}:7"
    recipe = write_recipe(tmp_path / "r.yaml", "never-loaded", train, files[1], tmp_path / "run",
                          data={"column_names": ["sentence", "label"], "label_names": ["negative", "positive"]})
    result = run_cli("finetune", str(recipe))
    assert result.exit_code == EXIT_DATA
    assert (f"warning: data.train: {train} starts with a header row (sentence, label) although data.column_names "
            "is set; skipping it. Drop data.column_names or the header line.") in result.stderr
    assert f"{train}:7: label 7 is not one of the known labels" in result.stderr
    assert not (tmp_path / "run").exists()


def test_column_names_without_header_reads_every_row(tmp_path):
    path = write_csv(tmp_path / "bare.csv", sentiment_rows(4), header=False)
    assert len(read_table(path, "data.train", ["sentence", "label"])) == 4


def test_copy_into_a_folder_named_with_a_trailing_slash(tmp_path):
    dest = tmp_path / "mine"
    copied = run_cli("recipes", "copy", "sst2-t5", f"{dest}/")
    assert copied.exit_code == 0, copied.stderr
    assert (dest / "sst2-t5.yaml").is_file()
    again = run_cli("recipes", "copy", "sst2-t5", f"{dest}/")
    assert again.exit_code == EXIT_USAGE and "already exists" in again.stderr


@pytest.mark.parametrize("dest", ["missing/deeper/", "missing/r.yaml"])
def test_copy_to_a_missing_parent_is_one_line_exit_2(tmp_path, dest):
    result = run_cli("recipes", "copy", "sst2-t5", str(tmp_path / dest))
    assert result.exit_code == EXIT_USAGE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{tmp_path / 'missing'} does not exist" in lines[0] and "mkdir -p" in lines[0]
    assert not (tmp_path / "missing").exists()


def test_check_recipe_task_names_both_tasks_and_the_fix(tmp_path, files):
    path = write_recipe(tmp_path / "r.yaml", "never-loaded", *files, tmp_path / "run")
    recipe = load_recipe(str(path))
    check_recipe_task(recipe, "classification", "runs/x")  # the same task: fine
    with pytest.raises(RecipeError) as info:
        check_recipe_task(recipe, "ner", "runs/x")
    assert str(info.value) == (f"--recipe {path} is for task 'classification' but model runs/x was trained for "
                               "'ner'. Use a ner recipe or drop --recipe.")
    assert info.value.exit_code == EXIT_USAGE


def test_set_of_a_mapping_on_a_section_sets_those_keys_and_keeps_the_others(tmp_path, files):
    path = write_recipe(tmp_path / "r.yaml", "never-loaded", *files, tmp_path / "run")
    before = load_recipe(str(path))
    after = load_recipe(str(path), ["train={epochs: 2, learning_rate: 1.0e-4}"])
    assert (after.train.epochs, after.train.learning_rate) == (2, 1.0e-4)
    untouched = {k: v for k, v in before.train.model_dump().items() if k not in ("epochs", "learning_rate")}
    assert {k: after.train.model_dump()[k] for k in untouched} == untouched
    # The keys are still checked one by one, named as the user wrote them.
    err = refused(tmp_path, "--set", "train={epochs: many}", files=files)
    assert "--set train.epochs: Input should be a valid number" in err


def test_every_missing_input_is_named_in_one_error(tmp_path, files, tiny_models):
    """A recipe copied to another machine often has every path wrong: one attempt names them all
    (data first, with its exit code), and --dry-run does the same rather than stop at the model."""
    from llmctl.errors import EXIT_MODEL

    train, _ = files
    recipe = write_recipe(tmp_path / "r.yaml", tmp_path / "no-model", tmp_path / "gone.csv",
                          tmp_path / "nope.csv", tmp_path / "run")
    for extra in ((), ("--dry-run",)):
        result = run_cli("finetune", str(recipe), *extra)
        assert result.exit_code == EXIT_DATA and "Traceback" not in result.stderr
        assert "3 problems with the recipe's inputs" in result.stderr
        for named in ("data.train: file", "gone.csv", "data.validation: file", "nope.csv",
                      "model.name_or_path: Model directory", "no-model"):
            assert named in result.stderr, named
        assert not (tmp_path / "run").exists()
    # One path wrong: its own error, as before (the data's, or the model's with its exit code).
    one = write_recipe(tmp_path / "one.yaml", tiny_models["bert"], train, tmp_path / "nope.csv", tmp_path / "run")
    alone = run_cli("finetune", str(one), "--json")
    assert alone.exit_code == EXIT_DATA and alone.json()["error"].startswith("data.validation: file")
    model_only = write_recipe(tmp_path / "m.yaml", tmp_path / "no-model", train, None, tmp_path / "run")
    result = run_cli("finetune", str(model_only))
    assert result.exit_code == EXIT_MODEL and "no-model" in result.stderr and "problems" not in result.stderr
