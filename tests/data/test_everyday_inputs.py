"""Issue 27 items 5 and 12: `predict` reads its inputs by the training reader's rules (a JSON
list of objects, one object per jsonl line; any other shape exit 3 naming where), and the
messages about a bad field or gate name what is wrong. One tiny classifier, trained once."""

import json

import pytest

from helpers import ONE_THREAD, error_lines, run_cli, sentiment_rows, write_csv, write_recipe
from llmctl.errors import EXIT_DATA, EXIT_OK, EXIT_USAGE


@pytest.fixture(scope="module")
def run(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inputs")
    train = write_csv(tmp / "train.csv", sentiment_rows(16))
    recipe = write_recipe(tmp / "r.yaml", tiny_models["bert"], train, train, tmp / "run", train={"max_steps": 2})
    result = run_cli("finetune", str(recipe), env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr[-3000:]
    return tmp / "run"


def predict(run, path):
    return run_cli("predict", str(run), "--input", str(path), "--json", env=ONE_THREAD)


def test_a_json_list_of_objects_gives_one_prediction_per_object(run, tmp_path):
    rows = [{"sentence": "a great film"}, {"sentence": "a dull film"}]
    one_line = tmp_path / "one.json"
    one_line.write_text(json.dumps(rows))
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(rows, indent=2))
    for path in (one_line, pretty):
        result = predict(run, path)
        assert result.exit_code == EXIT_OK, result.stderr[-2000:]
        predictions = result.json()["predictions"]
        assert [p["sentence"] for p in predictions] == ["a great film", "a dull film"]
        assert all("label" in p for p in predictions) and "line" not in predictions[0]


@pytest.mark.parametrize("name, text, message", [
    ("rows.jsonl", '{"sentence": "fine"}\n[1, 2]\n', "{path}:2: expected a JSON object per line, got list."),
    ("rows.json", '[{"sentence": "fine"}, 7]', "{path}: item 2 of the list is a JSON int, not an object."),
    ("list.jsonl", '{"sentence": ["a", "b"]}\n', "{path} row 1: 'sentence' is a JSON list, not text."),
    ("null.jsonl", '{"sentence": null}\n', "{path} row 1: 'sentence' is null, not text."),
])
def test_other_shapes_are_refused_naming_where(run, tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    result = predict(run, path)
    assert result.exit_code == EXIT_DATA, result.stderr[-2000:]
    assert error_lines(result.stderr)[0].startswith("error: " + message.format(path=path)), result.stderr


def test_input_folder_is_named_a_folder(run, tmp_path):
    result = predict(run, tmp_path)
    assert result.exit_code == EXIT_DATA
    assert error_lines(result.stderr) == [f"error: --input: {tmp_path} is a folder, not a file. Give one jsonl, json, "
                                          "csv, tsv or txt file, or - for stdin."]


def test_fail_over_a_higher_is_better_metric_is_refused(run):
    result = run_cli("eval", str(run), "--fail-over", "accuracy=0.9")
    assert result.exit_code == EXIT_USAGE
    assert error_lines(result.stderr) == ["error: --fail-over accuracy=0.9: accuracy is better when higher, so this "
                                          "gate would pass a worse model and fail a better one. "
                                          "Use --fail-under accuracy=0.9."]
