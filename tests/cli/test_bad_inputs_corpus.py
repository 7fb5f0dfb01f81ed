"""Every malformed file in tests/cli/bad_inputs/ goes through the real CLI and must be refused with
a documented exit code and one `error:` line naming the file and the line, column, question
or key at fault, with no traceback, before the run directory exists (so before any model or
tokenizer loaded: finetune creates the run directory only after the data and the model source
pass their checks)."""

import pytest
import yaml

from helpers import REPO, run_cli
from llmctl.errors import EXIT_DATA, EXIT_USAGE

BAD = REPO / "tests" / "cli" / "bad_inputs"
CLASSIFY = {"text_columns": ["sentence"], "label_column": "label"}

# id: (task, train file, validation file, extra data keys, exit code, what the error line must say)
CASES = {
    "missing label column": ("classification", "missing_label_column.csv", None, CLASSIFY, EXIT_DATA,
                             ["missing_label_column.csv", "'label'", "score"]),
    "label out of range": ("classification", "good_train.csv", "label_out_of_range.csv", CLASSIFY, EXIT_DATA,
                           ["label_out_of_range.csv:3", "7"]),
    "unseen label": ("classification", "good_train_names.csv", "unseen_label.csv", CLASSIFY, EXIT_DATA,
                     ["unseen_label.csv:3", "'neutral'"]),
    "empty split": ("classification", "good_train.csv", "empty_split.csv", CLASSIFY, EXIT_DATA,
                    ["empty_split.csv", "data.validation", "no rows"]),
    "empty file": ("classification", "empty_file.csv", None, CLASSIFY, EXIT_DATA, ["empty_file.csv", "data.train"]),
    "row missing a cell": ("classification", "short_row.csv", None, CLASSIFY, EXIT_DATA, ["short_row.csv:3"]),
    "missing label value": ("classification", "missing_label_value.csv", None, CLASSIFY, EXIT_DATA,
                            ["missing_label_value.csv:2"]),
    "broken json line": ("classification", "broken_line.jsonl", None, CLASSIFY, EXIT_DATA,
                         ["broken_line.jsonl:2:", "invalid JSON"]),
    "conll line without a tag": ("ner", "conll_missing_tag.txt", None, {}, EXIT_DATA, ["conll_missing_tag.txt:6"]),
    "conll tag not IOB2": ("ner", "conll_bad_scheme.txt", None, {}, EXIT_DATA, ["conll_bad_scheme.txt:2", "X-VERB"]),
    "conll tag unseen in training": ("ner", "good_ner.txt", "conll_unseen_tag.txt", {}, EXIT_DATA,
                                     ["conll_unseen_tag.txt:4", "B-CITY"]),
    "squad answer not at answer_start": ("qa", "squad_answer_mismatch.json", None, {}, EXIT_DATA,
                                         ["squad_answer_mismatch.json", "q2"]),
    "squad answer without answer_start": ("qa", "squad_missing_answer_start.json", None, {}, EXIT_DATA,
                                          ["squad_missing_answer_start.json", "q2", "answer_start"]),
    "squad question longer than max_length": ("qa", "good_squad.json", "squad_question_too_long.json",
                                              {"max_length": 64, "doc_stride": 16}, EXIT_DATA,
                                              ["squad_question_too_long.json", "q-long"]),
}

# Recipes that are themselves malformed: (file, exit code, what the error must say).
RECIPES = {
    "wrong types and a misspelt key": ("recipe_wrong_types.yaml", EXIT_USAGE,
                                       ["recipe_wrong_types.yaml", "train.epochs", "train.batch_size",
                                        "train.learning_rate", "lerning_rate"]),
    "invalid YAML": ("recipe_invalid_yaml.yaml", EXIT_USAGE, ["recipe_invalid_yaml.yaml:7:6: invalid YAML"]),
    "not a mapping": ("recipe_not_a_mapping.yaml", EXIT_USAGE, ["recipe_not_a_mapping.yaml"]),
}


def assert_refused(result, exit_code, needles, run_dir):
    """One `error:` line naming everything in `needles` (a recipe error may list several
    problems, one per line, after it: the design's "collect all problems, raise once")."""
    assert result.exit_code == exit_code, result.stderr
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    message = result.stderr[result.stderr.index(errors[0]):]
    assert needles[0] in errors[0], (needles[0], errors[0])
    for needle in needles[1:]:
        assert needle in message, (needle, message)
    assert not run_dir.exists(), "the run started before the bad input was noticed"


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_is_refused_before_the_model_loads(case, tmp_path, tiny_models):
    task, train, valid, data, exit_code, needles = CASES[case]
    recipe = {
        "task": task,
        "model": {"name_or_path": str(tiny_models["bert"])},
        "data": {"train": str(BAD / train), "validation": str(BAD / valid) if valid else None} | data,
        "train": {"epochs": 1, "batch_size": 2, "precision": "fp32"},
        "output_dir": str(tmp_path / "run"),
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert_refused(run_cli("finetune", str(tmp_path / "r.yaml")), exit_code, needles, tmp_path / "run")


@pytest.mark.parametrize("case", list(RECIPES))
def test_bad_recipe_is_refused(case):
    name, exit_code, needles = RECIPES[case]
    result = run_cli("finetune", str(BAD / name), cwd=REPO)
    assert_refused(result, exit_code, needles, REPO / "runs" / "never-created")


def test_header_with_stray_whitespace_is_read_as_intended():
    """Not an error: `sentence , label` means the columns `sentence` and `label`."""
    from llmctl.data.sources import read_table

    frame = read_table(BAD / "header_stray_whitespace.csv", "data.train")
    assert list(frame.columns) == ["sentence", "label"] and len(frame) == 2
