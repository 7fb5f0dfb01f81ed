"""Reading SQuAD data in every accepted layout, and bad input: one clear line naming the
question id, or a counted warning, before any model loads (DataError -> exit 3)."""

import json

import pytest

from helpers import run_cli
from llmctl.console import tell
from llmctl.errors import EXIT_DATA, EXIT_USAGE, DataError, RecipeError
from llmctl.tasks.qa import QAData, QATask
from qa_helpers import flat_rows, make_articles, qa_recipe, write_jsonl, write_squad


def task(**data):
    return QATask(QAData(**data))


@pytest.fixture
def articles():
    return make_articles(n_articles=2, paragraphs=1, people=2, seed=1)


def test_official_and_flat_layouts_read_the_same(articles, tmp_path):
    import pandas as pd

    rows = flat_rows(articles)
    official = task().load_split("train", str(write_squad(tmp_path / "train.json", articles)))
    assert len(official) == 8 and official.ids[0] == "q0"
    text, start = official.answers[0][0]
    assert official.contexts[0][start:start + len(text)] == text
    (tmp_path / "list.json").write_text(json.dumps(rows))
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": rows}))
    pd.DataFrame(rows).to_parquet(tmp_path / "rows.parquet")
    listed = [dict(r, answers=[{"text": t, "answer_start": s} for t, s in zip(r["answers"]["text"],
                                                                               r["answers"]["answer_start"])])
              for r in rows]
    for name in ("rows.jsonl", "list.json", "wrapped.json", "rows.parquet", "listed.jsonl"):
        if name.endswith("jsonl"):
            write_jsonl(tmp_path / name, listed if name == "listed.jsonl" else rows)
        split = task().load_split("train", str(tmp_path / name))
        assert (split.ids, split.questions, split.contexts, split.answers) == \
               (official.ids, official.questions, official.contexts, official.answers), name


def test_column_names_and_limits(articles, tmp_path):
    rows = [{"qid": r["id"], "query": r["question"], "passage": r["context"], "gold": r["answers"]}
            for r in flat_rows(articles)]
    path = write_jsonl(tmp_path / "renamed.jsonl", rows)
    cfg = dict(question_column="query", context_column="passage", answers_column="gold", id_column="qid")
    split = task(**cfg, max_train_samples=3).load_split("train", str(path))
    assert split.ids == ["q0", "q1", "q2"]
    with pytest.raises(DataError, match="data.question_column: column 'question' is not in .*query"):
        task().load_split("train", str(path))


def test_answer_start_mismatch_names_the_question(articles, tmp_path):
    qas = articles[0]["paragraphs"][0]["qas"]
    qas[1]["answers"][0]["answer_start"] += 1
    qas[2]["answers"][0]["answer_start"] += 3
    path = write_squad(tmp_path / "bad.json", articles)
    with pytest.raises(DataError) as info:
        task().load_split("train", str(path))
    text = str(info.value)
    assert f"{path}: question q1: answer {qas[1]['answers'][0]['text']!r} is not at answer_start" in text
    assert "(and 1 more like it)" in text and "data.realign_answers: true" in text
    assert "\n" not in text


def test_realign_moves_and_counts(articles, tmp_path, capsys):
    qas = articles[0]["paragraphs"][0]["qas"]
    context = articles[0]["paragraphs"][0]["context"]
    right = [qa["answers"][0]["answer_start"] for qa in qas]
    del qas[1]["answers"][0]["answer_start"]
    with pytest.raises(DataError, match="question q1: answer .* has no answer_start"):
        task().load_split("train", str(write_squad(tmp_path / "missing.json", articles)))
    qas[0]["answers"][0]["answer_start"] += 2
    path = write_squad(tmp_path / "bad.json", articles)
    split = tell(task(realign_answers=True).load_split("train", str(path)))  # the task returns notes; tell shows them
    assert [a[0][1] for a in split.answers[:2]] == right[:2]
    assert context[right[0]:].startswith(split.answers[0][0][0])
    assert "moved answer_start of 2 answers" in capsys.readouterr().err
    qas[3]["answers"][0]["text"] = "Atlantis"
    with pytest.raises(DataError, match="question q3: answer 'Atlantis' does not occur in its context"):
        task(realign_answers=True).load_split("train", str(write_squad(tmp_path / "worse.json", articles)))


def test_empty_context_duplicate_id_and_missing_answers(articles, tmp_path):
    articles[1]["paragraphs"][0]["context"] = "  "
    with pytest.raises(DataError, match=r"question q4: the context is empty\. .*\(and 3 more like it\)"):
        task().load_split("validation", str(write_squad(tmp_path / "a.json", articles)))
    rows = flat_rows(make_articles(1, 1, 1))
    rows[1]["id"] = rows[0]["id"]
    with pytest.raises(DataError, match="question q0: the id appears twice"):
        task().load_split("train", str(write_jsonl(tmp_path / "dup.jsonl", rows)))
    bare = [{k: v for k, v in r.items() if k != "answers"} for r in flat_rows(make_articles(1, 1, 1))]
    with pytest.raises(DataError, match="question q0: no answers"):
        task().load_split("train", str(write_jsonl(tmp_path / "bare.jsonl", bare)))


def test_v2_file_read_as_v1(tmp_path, capsys):
    path = write_squad(tmp_path / "v2.json", make_articles(1, 2, 2, unanswerable=1), "v2.0")
    with pytest.raises(DataError) as info:
        task().load_split("validation", str(path))
    assert "has 2 unanswerable questions" in str(info.value) and "data.version_2_with_negative: true" in str(info.value)
    answerable = tell(task(skip_unanswerable=True).load_split("validation", str(path)))
    assert len(answerable) == 8 and all(answerable.answers)
    assert "skipped 2 unanswerable questions" in capsys.readouterr().err
    both = task(version_2_with_negative=True).load_split("validation", str(path))
    assert len(both) == 10 and sum(not a for a in both.answers) == 2


def test_question_longer_than_the_window(tiny_models, tmp_path):
    from transformers import AutoTokenizer

    articles = make_articles(1, 1, 2)
    articles[0]["paragraphs"][0]["qas"][1]["question"] = "Where " * 40 + "was she born?"
    qa = task(max_length=48, doc_stride=16)
    split = qa.load_split("validation", str(write_squad(tmp_path / "long.json", articles)))
    with pytest.raises(DataError, match=r"question q1 has \d+ tokens, which leaves 0 of data.max_length 48"):
        qa.featurize(split, AutoTokenizer.from_pretrained(tiny_models["bert"]))


def test_schema_and_cli_exit_codes(tmp_path):
    from llmctl.tasks.recipe import load_recipe

    articles = make_articles(1, 1, 2)
    good = write_squad(tmp_path / "good.json", articles)
    recipe = qa_recipe(tmp_path / "r.yaml", "never-loaded", good, good, tmp_path / "run",
                       data={"doc_stride": 64, "max_length": 64})
    with pytest.raises(RecipeError, match=r"doc_stride \(64\) must be smaller than data.max_length \(64\)"):
        load_recipe(str(recipe))
    with pytest.raises(RecipeError, match="did you mean 'doc_stride'"):
        load_recipe(str(recipe), ["data.doc_strid=1"])

    articles[0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 1
    bad = write_squad(tmp_path / "bad.json", articles)
    recipe = qa_recipe(tmp_path / "r.yaml", "never-loaded", bad, good, tmp_path / "run")
    result = run_cli("finetune", str(recipe))
    assert result.exit_code == EXIT_DATA, result.stderr
    assert "question q0: answer" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # failed before the model, nothing written
    predicted = run_cli("predict", str(tmp_path), "--question", "Where?")
    assert predicted.exit_code == EXIT_USAGE and "--question and --context go together" in predicted.stderr


def test_predict_rows():
    from llmctl.tasks.qa_data import predict_rows

    split = predict_rows([{"question": "Who?", "context": "Ann."}, {"id": "x", "question": "Q", "context": "C"}],
                         "in.jsonl", QAData())
    assert split.ids == ["0", "x"] and split.answers is None
    with pytest.raises(DataError, match="in.jsonl row 1: needs 'question' and 'context'"):
        predict_rows([{"text": "hello"}], "in.jsonl", QAData())
    with pytest.raises(DataError, match="question 0: the context is empty"):
        predict_rows([{"question": "Who?", "context": ""}], "in.jsonl", QAData())
