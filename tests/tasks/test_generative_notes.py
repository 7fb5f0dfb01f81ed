"""QA, seq2seq and causal-LM never print: what they have to say about the data (answers moved,
questions or empty rows skipped, integer targets without words) comes back as notes on the split,
and the command shows them, with the same words as before. Their rows are cut by the one
`Task.row_limit` rule: only the first max_*_samples rows are read and checked; predict input never."""


import pytest

from helpers import build_recipe, run_cli, write_jsonl
from llmctl.errors import EXIT_OK, DataError
from qa_helpers import make_articles, write_squad


def qa_realigned(tmp_path):
    from llmctl.tasks.qa import QAData, QATask

    articles = make_articles(1, 1, 2, seed=4)
    articles[0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] += 2
    path = write_squad(tmp_path / "train.json", articles)
    return QATask(QAData(realign_answers=True)), path, (
        f"data.train: moved answer_start of 1 answers in {path} to where their text occurs (data.realign_answers).", True)


def qa_skipped(tmp_path):
    from llmctl.tasks.qa import QAData, QATask

    path = write_squad(tmp_path / "v2.json", make_articles(1, 1, 2, unanswerable=1), "v2.0")
    return QATask(QAData(skip_unanswerable=True)), path, (
        f"data.train: skipped 1 unanswerable questions of {path} (data.skip_unanswerable).", True)


def seq2seq_digits(tmp_path):
    from llmctl.tasks.seq2seq import Seq2SeqData, Seq2SeqTask

    path = write_jsonl(tmp_path / "ids.jsonl", [{"source": "fine", "target": 1}, {"source": "bad", "target": 0}])
    return Seq2SeqTask(Seq2SeqData()), path, (
        f"data.train: column 'target' of {path} holds integers (0, 1) and there are no label words for them, so the "
        "model learns to write the digits. Set data.label_words (words in id order, e.g. [negative, positive]) to "
        "train on words.", True)


def causal_lm_empty(tmp_path):
    from llmctl.tasks.causal_lm import CausalLMData, CausalLMTask

    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "a good film"}, {"text": " "}, {"text": "a dull film"}])
    return CausalLMTask(CausalLMData(skip_empty=True)), path, (
        f"{path}: skipped 1 empty row(s) (data.skip_empty).", False)


@pytest.mark.parametrize("make", [qa_realigned, qa_skipped, seq2seq_digits, causal_lm_empty])
def test_load_split_returns_its_notes_and_prints_nothing(make, tmp_path, capsys):
    task, path, (text, warning) = make(tmp_path)
    split = task.load_split("train", str(path))
    assert capsys.readouterr().err == ""
    assert [(n.text, n.warning) for n in split.notes] == [(text, warning)]


def test_a_streamed_causal_lm_file_returns_its_note(tmp_path, capsys, monkeypatch):
    from llmctl.tasks import causal_lm_file
    from llmctl.tasks.causal_lm import CausalLMData, CausalLMTask
    from llmctl.tasks.causal_lm_file import LMFileSplit

    monkeypatch.setattr(causal_lm_file, "CHUNK_ROWS", 2)
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "" if i % 3 == 1 else f"film {i}"} for i in range(9)])
    split = CausalLMTask(CausalLMData(skip_empty=True, max_train_samples=7)).load_split("train", str(path))
    assert isinstance(split, LMFileSplit) and len(split) == 5  # rows 1 and 4 of the first 7 are empty
    assert capsys.readouterr().err == ""
    assert [n.text for n in split.notes] == [f"{path}: skipped 2 empty row(s) (data.skip_empty)."]


def test_finetune_shows_the_notes_its_task_returned(tiny_models, tmp_path):
    """Through the CLI: the causal-LM note and the row cut, as a user sees them."""
    rows = [{"text": "a good film"}, {"text": ""}, {"text": "a dull film"}, {"text": "  "}, {"text": "never read"}]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    valid = write_jsonl(tmp_path / "valid.jsonl", rows[:1])
    recipe = build_recipe(tmp_path / "r.yaml", "causal-lm", tiny_models["gpt2"], tmp_path / "run",
                          {"train": str(train), "validation": str(valid), "max_length": 16, "skip_empty": True,
                           "max_train_samples": 4})
    result = run_cli("finetune", str(recipe), "--max-steps", "1", "--json")
    assert result.exit_code == EXIT_OK, result.stderr
    assert f"{train}: skipped 2 empty row(s) (data.skip_empty)." in result.stderr.splitlines()
    assert result.json()["data"]["train_rows"] == 2


def test_qa_reads_and_checks_only_the_first_rows(tmp_path):
    from llmctl.tasks.qa import QAData, QATask

    articles = make_articles(1, 1, 2, seed=2)
    articles[0]["paragraphs"][0]["qas"][3]["answers"][0]["answer_start"] += 1  # the fourth question is wrong
    path = write_squad(tmp_path / "train.json", articles)
    assert QATask(QAData(max_train_samples=3)).load_split("train", str(path)).ids == ["q0", "q1", "q2"]
    with pytest.raises(DataError, match="question q3: answer .* is not at answer_start"):
        QATask(QAData(max_train_samples=4)).load_split("train", str(path))
    assert QATask(QAData(max_train_samples=3, max_eval_samples=1)).load_split("validation", str(path)).ids == ["q0"]


def test_predict_input_is_never_cut_by_max_eval_samples(tmp_path):
    """A saved model's recipe may set max_eval_samples; `llmctl predict` still answers every row."""
    from llmctl.tasks.causal_lm import CausalLMData, CausalLMTask
    from llmctl.tasks.qa import QAData, QATask
    from llmctl.tasks.seq2seq import Seq2SeqData, Seq2SeqTask

    qa = QATask(QAData(max_eval_samples=1)).predict_split(
        [{"question": f"Who is {n}?", "context": f"{n} is a pilot."} for n in ("Ann", "Bob", "Cy")], "stdin")
    assert qa.ids == ["0", "1", "2"]
    for task, field in ((Seq2SeqTask(Seq2SeqData(max_eval_samples=1)), "source"),
                        (CausalLMTask(CausalLMData(max_eval_samples=1)), "prompt")):
        assert len(task.predict_split([{field: "one"}, {field: "two"}], "stdin")) == 2

