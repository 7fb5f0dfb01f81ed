"""Issue 27 item 23, what a run shows: curves with whole-step ticks and one panel per metric (NER,
SQuAD v2), one number format per kind on the console and in the report (counts as integers,
scores with 4 decimals, yes / no), and no empty "validation metrics" header without validation.
Each run is trained through the CLI on a tiny model, as a user would."""

import random
import re
from html import unescape

import pytest

from helpers import ONE_THREAD, build_recipe, keyword_sentiment_rows, ner_sentence, run_cli, write_conll, write_csv
from llmctl.errors import EXIT_OK
from qa_helpers import make_articles, qa_recipe, write_squad


def finetune(recipe):
    result = run_cli("finetune", str(recipe), env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def ner_run(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ner_looks")
    rng = random.Random(0)
    train = write_conll(tmp / "train.txt", [ner_sentence(rng) for _ in range(24)])
    valid = write_conll(tmp / "valid.txt", [ner_sentence(rng) for _ in range(8)])
    recipe = build_recipe(tmp / "ner.yaml", "ner", tiny_models["bert"], tmp / "run",
                          {"train": str(train), "validation": str(valid), "max_length": 24},
                          train={"eval_every": 1, "save_every": 1000})
    finetune(recipe)
    return tmp / "run"


@pytest.fixture(scope="module")
def squad_v2_run(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qa_looks")
    data = write_squad(tmp / "v2.json", make_articles(n_articles=1, paragraphs=1, people=2, seed=4, unanswerable=2),
                       "v2.0")
    recipe = qa_recipe(tmp / "qa.yaml", tiny_models["bert"], data, data, tmp / "run",
                       data={"version_2_with_negative": True}, train={"save_every": 1000})
    return tmp / "run", finetune(recipe)


def curves(run_dir):
    """The figure curves.png was drawn from, rebuilt from the run's own files by the same code."""
    from llmctl.runs.plots import _jsonl, _saved_step
    from llmctl.runs.plots.curves import draw_curves

    return draw_curves(_jsonl(run_dir / "train_log.jsonl"), _jsonl(run_dir / "metrics.jsonl"),
                       _saved_step(run_dir), None)


def panels(figure):
    return [ax for ax in figure.axes if ax.get_visible()]


def test_curves_tick_whole_optimizer_steps(ner_run):
    assert (ner_run / "curves.png").is_file()
    for ax in panels(curves(ner_run)):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)


def test_squad_v2_curves_one_panel_per_metric_no_best_group(squad_v2_run):
    run_dir, _ = squad_v2_run
    axes = panels(curves(run_dir))
    titles = [ax.get_title() for ax in axes]
    assert titles == ["loss", "learning rate", "exact_match", "f1", "exact, per group", "f1, per group"]
    for ax in axes[4:]:  # HasAns / NoAns together; best_exact / best_f1 are not a group beside them
        assert [text.get_text() for text in ax.get_legend().get_texts()] == ["HasAns", "NoAns"]


def metric_lines(stdout: str) -> dict:
    return dict(re.findall(r"^  (\S+) +(\S+)$", stdout, re.M))


def test_console_and_report_show_counts_as_integers_and_booleans_as_words(squad_v2_run):
    run_dir, trained = squad_v2_run
    shown = metric_lines(trained.stdout)
    # SQuAD v2 logs its counts as floats (total 6.0): shown as counts, the scores with 4 decimals.
    assert shown["total"] == "6" and shown["HasAns_total"] == "4" and shown["NoAns_total"] == "2"
    assert re.fullmatch(r"\d+\.\d{4}", shown["f1"]) and re.fullmatch(r"\d+\.\d{4}", shown["exact_match"])
    result = run_cli("report", str(run_dir), "--max-examples", "0")
    assert result.exit_code == EXIT_OK, result.stderr
    page = unescape((run_dir / "report.html").read_text())
    cells = dict(re.findall(r"<tr><td>([^<]+)</td><td class=num>([^<]*)</td></tr>", page))
    assert cells["total"] == "6" and cells["NoAns_total"] == "2" and cells["samples"] == "12"
    assert re.fullmatch(r"\d+\.\d{4}", cells["exact"]) and re.fullmatch(r"\d+\.\d{4}", cells["runtime_s"])
    environment = dict(re.findall(r"<tr><td>([^<]+)</td><td>([^<]*)</td></tr>", page))
    assert environment["deterministic_algorithms"] == "no"
    assert ">False<" not in page and ">True<" not in page
    # The history table: steps as counts, every metric with 4 decimals, counts without them.
    history = page[page.index('id="history"'):page.index('id="worst"')]
    assert "<td class=num>2</td><td class=num>1.0000</td>" in history  # step, epoch
    assert "<td class=num>6</td>" in history and "6.0000" not in history
    # `runs show` alike, and the recipe's booleans as the recipe spells them.
    shown = run_cli("runs", "show", str(run_dir))
    assert shown.exit_code == EXIT_OK, shown.stderr
    assert re.search(r"^  total +6$", shown.stdout, re.M) and re.search(r"^  NoAns_total +2$", shown.stdout, re.M)
    assert re.search(r"^  model\.trust_remote_code +false$", shown.stdout, re.M)
    assert "False" not in shown.stdout and "True" not in shown.stdout


def test_no_validation_metrics_header_without_validation(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", keyword_sentiment_rows(8, seed=0))
    recipe = build_recipe(tmp_path / "r.yaml", "classification", tiny_models["bert"], tmp_path / "run",
                          {"train": str(train), "validation": None, "text_columns": ["sentence"],
                           "label_column": "label", "max_length": 16},
                          train={"metric_for_best": None, "save_every": 1000})
    result = finetune(recipe)
    assert "validation metrics" not in result.stdout
    assert result.stdout.splitlines()[0] == f"output_dir: {tmp_path / 'run'}"
