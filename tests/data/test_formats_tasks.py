"""Globs, folders and compressed files for the tasks with their own readers (NER, QA) and for
`predict --input`, through the real CLI: several files read as one split, and every problem
named by the file and line it is in."""

import gzip
import json
import random

import pytest

from helpers import ONE_THREAD, build_recipe, error_lines, ner_sentence, run_cli, write_conll
from llmctl.errors import EXIT_DATA, EXIT_OK
from qa_helpers import flat_rows, make_articles, qa_recipe, write_jsonl


def ner_recipe(root, model, train, out, **data):
    return build_recipe(root / f"{out.name}.yaml", "ner", model, out,
                        {"train": str(train), "validation": None, "max_length": 24} | data,
                        train={"epochs": 1, "learning_rate": 2e-3, "logging_steps": 4})


@pytest.fixture(scope="module")
def ner_glob_run(tiny_models, tmp_path_factory):
    """A tiny BERT trained on the folder `train/`: two CoNLL files, the second with an entity that
    starts with I- (repaired to B-, with a warning naming its file and line). The glob form is
    read the same way (test_ner_errors_name_the_second_file_and_its_line)."""
    rng = random.Random(0)
    root = tmp_path_factory.mktemp("ner-glob")
    (root / "train").mkdir()
    write_conll(root / "train" / "train-a.conll", [ner_sentence(rng) for _ in range(12)])
    second = [ner_sentence(rng) for _ in range(11)]
    write_conll(root / "train" / "train-b.conll", second + [[("Paris", "I-LOC"), ("is", "O"), ("big", "O")]])
    # write_conll: a -DOCSTART- line and a blank one, then each sentence and a blank line.
    repaired_line = 3 + sum(len(s) + 1 for s in second)
    recipe = ner_recipe(root, tiny_models["bert"], root / "train", root / "run")
    result = run_cli("finetune", str(recipe), "--json", env=ONE_THREAD)
    return root, result, repaired_line


def test_ner_split_from_a_folder_of_two_conll_files_trains(ner_glob_run):
    root, result, repaired_line = ner_glob_run
    assert result.exit_code == EXIT_OK, result.stderr
    assert result.json()["train"]["samples"] == 24  # one epoch over both files' sentences
    assert f"first at {root / 'train' / 'train-b.conll'}:{repaired_line}; read as B- (IOB2)" in result.stderr


def test_ner_errors_name_the_second_file_and_its_line(tmp_path):
    rng = random.Random(1)
    write_conll(tmp_path / "part-1.conll", [ner_sentence(rng) for _ in range(3)])
    (tmp_path / "part-2.conll").write_text("Alice B-PER\n\nSmith E-PER\n")
    recipe = ner_recipe(tmp_path, tmp_path / "no-such-model", tmp_path / "part-*.conll", tmp_path / "run")
    result = run_cli("finetune", str(recipe))
    assert result.exit_code == EXIT_DATA, result.stderr  # the data is checked before the model is looked for
    (error,) = error_lines(result.stderr)
    assert error.startswith(f"error: data.train: {tmp_path / 'part-2.conll'}:3: tag 'E-PER' belongs to the IOBES")


def test_ner_glob_matching_nothing_is_exit_3_naming_the_pattern(tmp_path):
    pattern = tmp_path / "train-*.conll"
    recipe = ner_recipe(tmp_path, tmp_path / "no-such-model", pattern, tmp_path / "run")
    result = run_cli("finetune", str(recipe))
    assert result.exit_code == EXIT_DATA, result.stderr
    assert error_lines(result.stderr) == [f"error: data.train: no file matches {pattern}. Check the pattern "
                                          "(relative to where you run llmctl) and that the files exist."]


def test_ner_folder_of_json_lines_files_reads_in_name_order(tmp_path):
    from llmctl.tasks.ner import NerData, NerTask

    (tmp_path / "b.jsonl").write_text(json.dumps({"tokens": ["Bonn"], "ner_tags": ["B-LOC"]}) + "\n\n"
                                      + json.dumps({"tokens": ["EU", "x"], "ner_tags": ["B-ORG"]}) + "\n")
    (tmp_path / "a.jsonl").write_text(json.dumps({"tokens": ["Peter"], "ner_tags": ["B-PER"]}) + "\n")
    task = NerTask(NerData())
    with pytest.raises(Exception) as caught:
        task.load_split("train", str(tmp_path))
    assert caught.value.exit_code == EXIT_DATA
    assert str(caught.value).startswith(f"data.train: {tmp_path / 'b.jsonl'}:3: 2 tokens but 1 tags.")
    (tmp_path / "b.jsonl").write_text(json.dumps({"tokens": ["Bonn"], "ner_tags": ["B-LOC"]}) + "\n")
    assert task.load_split("train", str(tmp_path)).tokens == [["Peter"], ["Bonn"]]


def test_qa_split_from_a_folder_of_two_json_lines_files_trains(tiny_models, tmp_path):
    rows = flat_rows(make_articles(n_articles=2, paragraphs=1, people=3, seed=0))
    (tmp_path / "train").mkdir()
    write_jsonl(tmp_path / "train" / "part-1.jsonl", rows[:6])
    write_jsonl(tmp_path / "train" / "part-2.jsonl", rows[6:])
    recipe = qa_recipe(tmp_path / "r.yaml", tiny_models["bert"], tmp_path / "train", None, tmp_path / "run")
    result = run_cli("finetune", str(recipe), "--json", env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr
    assert result.json()["train"]["samples"] >= len(rows) == 12  # windows: at least one per question of both files

    rows[8]["answers"]["answer_start"] = [0]  # now the answer is not where it says
    write_jsonl(tmp_path / "train" / "part-2.jsonl", rows[6:])
    result = run_cli("finetune", str(recipe), "--overwrite")
    assert result.exit_code == EXIT_DATA, result.stderr
    (error,) = error_lines(result.stderr)
    assert error.startswith(f"error: {tmp_path / 'train' / 'part-2.jsonl'}:3: question {rows[8]['id']}: answer ")


def test_predict_reads_a_gzipped_input_as_the_plain_file(ner_glob_run):
    root, result, _ = ner_glob_run
    assert result.exit_code == EXIT_OK, result.stderr
    text = (json.dumps({"text": "Alice Smith works for Acme Corp in Paris."}) + "\n\n"
            + json.dumps({"tokens": ["Bob", "was", "born", "in", "Tokyo", "."]}) + "\n")
    plain = root / "in.jsonl"
    plain.write_text(text)
    packed = root / "in.jsonl.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    outputs = []
    for source in (plain, packed):
        predicted = run_cli("predict", str(root / "run"), "--input", str(source), env=ONE_THREAD)
        assert predicted.exit_code == EXIT_OK, predicted.stderr
        outputs.append([json.loads(line) for line in predicted.stdout.splitlines()])
    assert outputs[0] == outputs[1] and [row["line"] for row in outputs[1]] == [1, 3]
    assert outputs[1][0]["text"] == "Alice Smith works for Acme Corp in Paris."

    broken = root / "broken.jsonl.gz"
    broken.write_bytes(b"not gzip at all\n")
    failed = run_cli("predict", str(root / "run"), "--input", str(broken))
    assert failed.exit_code == EXIT_DATA
    assert error_lines(failed.stderr)[0].startswith(f"error: --input: {broken} is not a readable gzip file")


def test_qa_glob_of_official_squad_files_reads_each_and_names_the_file(tmp_path):
    from llmctl.errors import DataError
    from llmctl.tasks.qa import QAData, QATask
    from qa_helpers import write_squad

    first, second = (make_articles(n_articles=1, paragraphs=1, people=2, seed=s) for s in (0, 1))
    for qa in second[0]["paragraphs"][0]["qas"]:
        qa["id"] = "b-" + qa["id"]
    write_squad(tmp_path / "squad-1.json", first)
    write_squad(tmp_path / "squad-2.json", second)
    task = QATask(QAData())
    split = task.load_split("train", str(tmp_path / "squad-*.json"))
    assert split.ids == ["q0", "q1", "q2", "q3", "b-q0", "b-q1", "b-q2", "b-q3"]
    second[0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = 0
    write_squad(tmp_path / "squad-2.json", second)
    with pytest.raises(DataError) as caught:
        task.load_split("train", str(tmp_path / "squad-*.json"))
    assert str(caught.value).startswith(f"{tmp_path / 'squad-2.json'}: question b-q1: answer ")
