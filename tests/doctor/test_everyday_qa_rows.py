"""Issue 27 item 9: with data.skip_unanswerable, max_train_samples counts the answerable questions
training uses; the doctor reads the same rows, and numbers the questions of a JSON file as
questions (it has no lines)."""

from helpers import ONE_THREAD, run_cli
from llmctl.errors import EXIT_OK
from qa_helpers import make_articles, qa_recipe, write_squad


def test_max_train_samples_counts_answerable_questions_and_the_doctor_agrees(tiny_models, tmp_path):
    # Each paragraph: 4 answerable questions, then 2 unanswerable ones (questions 5, 6, 11, 12).
    train = write_squad(tmp_path / "train.json", make_articles(1, paragraphs=2, people=2, unanswerable=2), "2.0")
    recipe = qa_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, None, tmp_path / "run",
                       data={"skip_unanswerable": True, "max_train_samples": 5})
    result = run_cli("doctor", str(recipe), "--json", env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr[-2000:]
    report = result.json()
    assert report["splits"]["train"]["rows"] == 5  # 5 answerable questions asked, 5 used
    assert report["splits"]["train"]["rows_read"] == 7 and report["splits"]["train"]["unanswerable"] == 2
    [finding] = [f for f in report["findings"] if f["check"] == "unanswerable"]
    assert "(first at questions 5, 6)" in finding["message"], finding["message"]
    assert "line" not in finding["message"]
