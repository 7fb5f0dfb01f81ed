"""`llmctl report`, the model card and `llmctl push`, driven through the CLI on one real tiny
classification run (and one LoRA run for its card): the HTML page parsed (and rendered in
headless Chromium where installed), the card read back by huggingface_hub, push's dry run
listing the model folder and every refusal one line with its exit code."""

import base64
import csv
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from helpers import (ONE_THREAD, build_recipe, error_lines, finetune_json, keyword_sentiment_rows, ner_sentence,
                     run_cli, write_conll, write_csv, write_recipe)
from llmctl.errors import EXIT_MODEL, EXIT_OK, EXIT_USAGE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# A validation sentence that must come out as text, not markup.
TRICKY = {"sentence": "the <b>plot</b> was great & \"fun\"", "label": "positive"}
SECTIONS = {"reproduce", "metrics", "per-class", "pictures", "history", "worst", "recipe", "environment"}


@pytest.fixture(scope="module")
def cls_run(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    train = write_csv(tmp / "train.csv", keyword_sentiment_rows(96, seed=0))
    valid = write_csv(tmp / "valid.csv", keyword_sentiment_rows(23, seed=1) + [TRICKY])
    recipe = write_recipe(tmp / "r.yaml", tiny_models["bert"], train, valid, tmp / "run",
                          train={"epochs": 3, "eval_every": 12, "save_every": 1000, "logging_steps": 50})
    result = finetune_json(recipe)
    # A picture like the ones runs draw at each evaluation; the report embeds every *.png it finds.
    (tmp / "run" / "test_picture.png").write_bytes(gradient_png(64, 32))
    return tmp, result


def gradient_png(width: int, height: int) -> bytes:
    """A grey-gradient PNG written with the standard library alone."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\0" + bytes((x * 255 // width) for x in range(width)) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return PNG_MAGIC + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


class Page(HTMLParser):
    """Sections (id -> heading), every src/href, tags seen, and the rows of each section's tables."""

    def __init__(self):
        super().__init__()
        self.sections, self.links, self.images, self.tags = {}, [], [], set()
        self.tables: dict[str, list[list[str]]] = {}
        self._section, self._cell, self._row, self._in_h2 = None, None, None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        for key in ("src", "href"):
            if key in attrs:
                self.links.append(attrs[key])
        if tag == "section":
            self._section = attrs["id"]
        elif tag == "h2":
            self._in_h2 = True
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False
        elif tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr":
            self.tables.setdefault(self._section, []).append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._in_h2:
            self.sections[self._section] = data
        if self._cell is not None:
            self._cell += data


def parse(path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def report(cls_run):
    tmp, _ = cls_run
    result = run_cli("report", str(tmp / "run"), "--worst", "30", env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr[-3000:]
    return tmp, result


def test_report_is_one_page_with_every_section_and_nothing_from_the_network(report):
    tmp, result = report
    path = tmp / "run" / "report.html"
    assert result.stdout.strip() == str(path)
    page = parse(path)
    assert set(page.sections) == SECTIONS
    assert not {"script", "link", "iframe"} & page.tags
    assert not [link for link in page.links if link.lower().startswith(("http:", "https:", "//"))], page.links
    # every picture of the run is inline and decodes as a PNG
    pngs = sorted((tmp / "run").glob("*.png"))
    assert len(page.images) == len(pngs) >= 1
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)


def test_report_shows_the_runs_metrics_recipe_and_command(report, cls_run):
    tmp, result = report
    _, finished = cls_run
    page = parse(tmp / "run" / "report.html")
    shown = {row[0]: float(row[1]) for row in page.tables["metrics"] if len(row) == 2 and row[0] in finished["metrics"]}
    assert shown == pytest.approx({k: round(v, 4) for k, v in finished["metrics"].items()}, abs=1e-4)
    html = (tmp / "run" / "report.html").read_text()
    assert f"llmctl finetune {tmp / 'r.yaml'}" in html  # the command that started the run
    assert f"llmctl finetune {tmp / 'run' / 'recipe.yaml'} --output-dir {tmp / 'run'}-again" in html
    assert (tmp / "run" / "recipe.yaml").read_text().splitlines()[0] in html
    history = page.tables["history"]
    assert history[0][:2] == ["step", "epoch"] and len(history) - 1 == len((tmp / "run" / "metrics.jsonl").read_text().splitlines())


def test_worst_predictions_are_the_validation_rows_lowest_gold_probability_first(report):
    tmp, _ = report
    page = parse(tmp / "run" / "report.html")
    header, *rows = page.tables["worst"]
    assert header == ["text", "gold", "predicted", "gold-label probability"]
    with open(tmp / "valid.csv", newline="") as handle:
        gold = {row["sentence"]: row["label"] for row in csv.DictReader(handle)}
    assert len(rows) == len(gold) and {r[0] for r in rows} == set(gold)  # --worst 30 > 24 rows: all of them
    assert all(gold[text] == label for text, label, _, _ in rows)
    scores = [float(r[3]) for r in rows]
    assert scores == sorted(scores) and 0.0 <= scores[0] <= scores[-1] <= 1.0
    # data is escaped: the sentence reads as text, and its markup never reaches the page as markup
    assert TRICKY["sentence"] in {r[0] for r in rows}
    assert "<b>plot</b>" not in (tmp / "run" / "report.html").read_text()
    per_class = {row[0]: row for row in page.tables["per-class"][1:]}
    assert set(per_class) == {"negative", "positive"}
    assert sum(int(row[4]) for row in per_class.values()) == len(gold)


def test_ner_report_ranks_sentences_by_entity_f1_and_scores_each_entity_type_as_the_run_did(tiny_models, tmp_path):
    import random

    rng = random.Random(0)
    train = write_conll(tmp_path / "train.txt", [ner_sentence(rng) for _ in range(48)])
    sentences = [ner_sentence(rng) for _ in range(12)]
    valid = write_conll(tmp_path / "valid.txt", sentences)
    recipe = build_recipe(tmp_path / "ner.yaml", "ner", tiny_models["bert"], tmp_path / "run",
                          {"train": str(train), "validation": str(valid), "max_length": 24},
                          train={"epochs": 2, "learning_rate": 5e-3})
    metrics = finetune_json(recipe)["metrics"]
    result = run_cli("report", str(tmp_path / "run"), "--worst", "12", env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr[-3000:]
    page = parse(tmp_path / "run" / "report.html")
    header, *rows = page.tables["worst"]
    assert header == ["text", "gold", "predicted", "sentence entity F1"]
    texts = {" ".join(word for word, _ in sentence) for sentence in sentences}
    assert rows and {r[0] for r in rows} <= texts
    scores = [float(r[3]) for r in rows]
    assert scores == sorted(scores) and scores[0] < 1.0
    # per entity type, from the report's own predictions, equal to what seqeval gave the saved model
    per_entity = {row[0]: [float(x) for x in row[1:]] for row in page.tables["per-class"][1:]}
    for kind, (precision, recall, f1, support) in per_entity.items():
        assert [precision, recall, f1, support] == pytest.approx(
            [metrics[f"{kind}_precision"], metrics[f"{kind}_recall"], metrics[f"{kind}_f1"], metrics[f"{kind}_number"]],
            abs=1e-4), kind
    assert set(per_entity) == {k[:-3] for k in metrics if k.endswith("_f1")}


def _chromium():
    return next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)


def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium, chromium-browser or google-chrome on PATH; the page is only parsed")
    tmp, _ = report
    shot = tmp_path / "page.png"
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,1600",
                           f"--screenshot={shot}", (tmp / "run" / "report.html").as_uri()], capture_output=True, text=True)
    assert shot.is_file(), proc.stderr[-2000:]
    import numpy as np

    Image = pytest.importorskip("PIL.Image", reason="Pillow reads the screenshot")

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (1600, 1200)
    assert pixels.std() > 10  # text, tables and the picture, not a blank page


def test_report_of_a_run_without_a_saved_model_shows_the_rest_and_says_what_is_missing(cls_run, tmp_path):
    tmp, _ = cls_run
    run = tmp_path / "run"
    shutil.copytree(tmp / "run", run, ignore=shutil.ignore_patterns("model", "checkpoints", "report.html"))
    result = run_cli("report", str(run), "--output", str(tmp_path / "out" / "page.html"))
    assert result.exit_code == EXIT_OK, result.stderr
    assert "left out worst predictions: no saved model" in result.stderr
    page = parse(tmp_path / "out" / "page.html")
    assert set(page.sections) == SECTIONS and not (run / "report.html").exists()
    html = (tmp_path / "out" / "page.html").read_text()
    assert f"no saved model in {run / 'model'}" in html and "worst" not in page.tables


def test_report_of_a_run_still_being_written_says_so(cls_run, tmp_path):
    import fcntl

    tmp, _ = cls_run
    run = tmp_path / "run"
    shutil.copytree(tmp / "run", run, ignore=shutil.ignore_patterns("model", "checkpoints", "report.html", "metrics.json"))
    with open(run / "run.lock", "a+") as lock:  # held as a training process holds it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_cli("report", str(run), "--max-examples", "0")
    assert result.exit_code == EXIT_OK, result.stderr
    html = (run / "report.html").read_text()
    assert "running (this page shows what was written so far)" in html
    assert "No metrics.json: the run has not finished" in html
    assert len(parse(run / "report.html").tables["history"]) > 1


def test_report_refuses_a_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"not a run")
    result = run_cli("report", str(tmp_path))
    assert result.exit_code == EXIT_USAGE
    assert error_lines(result.stderr) == [
        f"error: {tmp_path} is not an llmctl run directory (no environment.json or recipe.yaml). "
        "Pass a directory made by `llmctl finetune` (its output_dir)."]
    assert "Traceback" not in result.stderr and not (tmp_path / "report.html").exists()


# -- the model card ---------------------------------------------------------------------------
def read_card(model_dir):
    from huggingface_hub import ModelCard, ModelCardData
    from huggingface_hub.repocard_data import model_index_to_eval_results

    card = ModelCard.load(model_dir / "README.md")  # raises on metadata the Hub would reject
    data = card.data.to_dict()
    name, results = model_index_to_eval_results(data["model-index"])
    ModelCardData(**data)  # and the same metadata builds a card again
    return card, data, name, results


def test_model_card_reads_back_with_the_runs_final_metrics(cls_run):
    tmp, finished = cls_run
    card, data, name, results = read_card(tmp / "run" / "model")
    assert name == "run" and data["library_name"] == "transformers" and "llmctl" in data["tags"]
    assert data["pipeline_tag"] == "text-classification"
    assert "base_model" not in data  # a local checkpoint is no Hub id
    metrics = {r.metric_type: r.metric_value for r in results}
    assert metrics == pytest.approx({k: round(v, 6) for k, v in finished["metrics"].items()}, abs=1e-6)
    assert {(r.task_type, r.dataset_name, r.dataset_split) for r in results} == {
        ("text-classification", "local file valid.csv", "validation")}
    assert "- train: `train.csv`: 96 rows" in card.text and "- validation: `valid.csv`: 24 rows" in card.text
    assert f"llmctl finetune {tmp / 'r.yaml'}" in card.text
    assert "Not evaluated on:\n- a held-out test split (none was given)" in card.text


def test_model_card_names_a_hub_base_model_and_a_hub_dataset(cls_run, tmp_path):
    """A run from Hub ids (which cannot train offline here): its recipe rewritten, the card rebuilt."""
    import yaml

    from llmctl.runs.model_card import write_model_card

    tmp, finished = cls_run
    run = tmp_path / "sst2-bert"
    shutil.copytree(tmp / "run", run, ignore=shutil.ignore_patterns("checkpoints", "report.html"))
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["model"]["name_or_path"] = "google-bert/bert-base-uncased"
    recipe["data"] |= {"dataset": "nyu-mll/glue", "config": "sst2", "train": "train", "validation": "validation"}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    write_model_card(run)
    card, data, name, results = read_card(run / "model")
    assert data["base_model"] == "google-bert/bert-base-uncased" and data["datasets"] == ["nyu-mll/glue"]
    assert name == "sst2-bert" and {(r.dataset_type, r.dataset_config, r.dataset_split) for r in results} == {
        ("nyu-mll/glue", "sst2", "validation")}
    assert "- validation: `nyu-mll/glue` split `validation`" in card.text


def test_model_card_of_a_lora_run_names_peft_and_its_base(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", keyword_sentiment_rows(32, seed=0))
    valid = write_csv(tmp_path / "valid.csv", keyword_sentiment_rows(16, seed=1))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, valid, tmp_path / "run", peft={"r": 4},
                          train={"max_steps": 4, "eval_every": 2, "save_every": 1000})
    finished = finetune_json(recipe)
    card, data, _, results = read_card(tmp_path / "run" / "model")
    assert data["library_name"] == "peft" and {"llmctl", "lora"} <= set(data["tags"])
    assert {r.metric_type: r.metric_value for r in results} == pytest.approx(
        {k: round(v, 6) for k, v in finished["metrics"].items()}, abs=1e-6)
    assert f"from `{tiny_models['bert']}` as a LoRA adapter" in card.text
    # the export's card: the same run and metrics, for a plain checkpoint
    assert run_cli("export", str(tmp_path / "run"), "--output", str(tmp_path / "merged")).exit_code == EXIT_OK
    card, data, name, results = read_card(tmp_path / "merged")
    assert name == "run" and data["library_name"] == "transformers" and {"llmctl", "lora"} <= set(data["tags"])
    assert {r.metric_type: r.metric_value for r in results} == pytest.approx(
        {k: round(v, 6) for k, v in finished["metrics"].items()}, abs=1e-6)
    assert "The LoRA adapter merged into its base: a plain checkpoint, loaded without peft" in card.text


# -- push ---------------------------------------------------------------------------------------
def test_push_dry_run_lists_the_model_folder_and_touches_no_network(cls_run):
    tmp, _ = cls_run
    unreachable = {"HF_HUB_OFFLINE": None, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": None}
    result = run_cli("push", str(tmp / "run"), "--repo-id", "my-org/sst2-tiny", "--dry-run", "--json", env=unreachable)
    assert result.exit_code == EXIT_OK, result.stderr
    listed = {f["path"]: f["bytes"] for f in result.json()["files"]}
    model = tmp / "run" / "model"
    assert listed == {str(p.relative_to(model)): p.stat().st_size for p in model.rglob("*") if p.is_file()}
    assert {"README.md", "config.json", "model.safetensors", "llmctl.json"} <= set(listed)
    assert result.json()["url"] == "http://127.0.0.1:9/my-org/sst2-tiny"
    text = run_cli("push", str(tmp / "run"), "--repo-id", "my-org/sst2-tiny", "--dry-run", "--private")
    assert text.exit_code == EXIT_OK
    assert text.stdout.startswith(f"would upload {len(listed)} files (")
    assert "/my-org/sst2-tiny (private)" in text.stdout.splitlines()[0]
    assert {line.split()[-1] for line in text.stdout.splitlines()[1:] if line.startswith("  ")} == set(listed)


@pytest.mark.parametrize("env, says", [
    ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set, so nothing can be uploaded to the Hugging Face Hub."),
    ({"HF_HUB_OFFLINE": None, "HF_ENDPOINT": "http://127.0.0.1:9"},
     "The Hugging Face Hub (http://127.0.0.1:9) is unreachable, so my-org/sst2-tiny cannot be uploaded."),
])
def test_push_without_the_hub_fails_saying_so(cls_run, env, says):
    tmp, _ = cls_run
    result = run_cli("push", str(tmp / "run"), "--repo-id", "my-org/sst2-tiny", env=env | {"HF_TOKEN": "hf_secret_x"})
    assert result.exit_code == EXIT_MODEL
    assert len(error_lines(result.stderr)) == 1 and error_lines(result.stderr)[0].startswith(f"error: {says}")
    assert "hf_secret_x" not in result.stderr + result.stdout


def test_push_refuses_a_run_without_a_model_and_a_malformed_repo_id(cls_run, tmp_path):
    tmp, _ = cls_run
    (tmp_path / "recipe.yaml").write_text((tmp / "run" / "recipe.yaml").read_text())
    result = run_cli("push", str(tmp_path), "--repo-id", "my-org/x", "--dry-run")
    assert result.exit_code == EXIT_MODEL
    assert error_lines(result.stderr) == [
        f"error: {tmp_path} has no saved model (no model/ folder), so there is nothing to push. "
        "Push a run that finished at least one evaluation (or its model/ folder)."]
    for bad in ("sst2-tiny", "my-org/sst2/tiny", "my-org/bad--name", "my org/x"):
        result = run_cli("push", str(tmp / "run"), "--repo-id", bad, "--dry-run")
        assert result.exit_code == EXIT_USAGE, bad
        assert error_lines(result.stderr) == [f"error: --repo-id '{bad}' is not a Hub repository id of the form ORG/NAME. "
                                              "Use letters, digits, '-', '_' or '.', e.g. --repo-id my-org/sst2-bert."]
