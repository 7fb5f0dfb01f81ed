"""train.report_to through the real CLI: TensorBoard event files and the MLflow store read back with
their own readers, a resumed run continuing the same logs, W&B offline, and the two bad inputs."""

import json
import shutil
import socket
import threading
from pathlib import Path

import pytest

from helpers import (ONE_THREAD, REPO, error_lines, keyword_sentiment_rows, rewind_to_checkpoint, run_cli, write_csv,
                     write_recipe)
from llmctl.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

# One worker trains the shared run; the other tests of this module read it.
pytestmark = pytest.mark.xdist_group("trackers")

# 48 rows at batch size 8: 6 steps an epoch, 12 in all; evaluated every 4 steps and at the end.
TRAIN = {"epochs": 2, "learning_rate": 2e-3, "eval_every": 4, "save_every": 4, "keep_checkpoints": 5,
         "report_to": ["tensorboard", "mlflow"]}
EVAL_STEPS = [4, 8, 12]


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def tracked(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("tracked")
    train = write_csv(root / "train.csv", keyword_sentiment_rows(48, seed=0))
    valid = write_csv(root / "valid.csv", keyword_sentiment_rows(16, seed=1))
    run_dir = root / "run"
    recipe = write_recipe(root / "recipe.yaml", tiny_models["bert"], train, valid, run_dir, train=TRAIN)
    result = run_cli("finetune", str(recipe), "--json", env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr
    return run_dir, recipe, result.json()


def scalars(event_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] as TensorBoard itself reads them (purged steps dropped)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(event_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def tensorboard_dir(run_dir: Path) -> Path:
    [folder] = (run_dir / "trackers" / "tensorboard").iterdir()  # one folder per run name
    return folder


def test_tensorboard_has_every_logged_step_evaluation_and_the_recipe(tracked):
    run_dir, _, out = tracked
    tags = scalars(tensorboard_dir(run_dir))
    train_log = jsonl(run_dir / "train_log.jsonl")
    assert [r["step"] for r in train_log] == list(range(1, 13))  # logging_steps 1
    for name in ("loss", "learning_rate", "samples_per_second", "epoch"):
        assert [s for s, _ in tags[f"train/{name}"]] == list(range(1, 13)), name
        assert [v for _, v in tags[f"train/{name}"]] == pytest.approx([r[name] for r in train_log], rel=1e-5)
    evaluations = jsonl(run_dir / "metrics.jsonl")
    assert [r["step"] for r in evaluations] == EVAL_STEPS
    for name in ("loss", "accuracy", "f1", "matthews_correlation"):
        assert tags[f"eval/{name}"] == [(r["step"], pytest.approx(r[name], abs=1e-6)) for r in evaluations]
    assert max(v for _, v in tags["eval/accuracy"]) == pytest.approx(out["metrics"]["accuracy"])

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    hparams = {}
    for folder in tensorboard_dir(run_dir).iterdir():  # add_hparams writes into a sub-folder
        if list(folder.glob("events.out.tfevents.*")):
            events = EventAccumulator(str(folder))
            events.Reload()
            for content in events.PluginTagToContent("hparams").values():
                data = plugin_data_pb2.HParamsPluginData.FromString(content)
                if data.HasField("session_start_info"):
                    info = data.session_start_info.hparams
                    hparams = {k: info[k].WhichOneof("kind") and getattr(info[k], info[k].WhichOneof("kind"))
                               for k in info}
    assert hparams["train.learning_rate"] == pytest.approx(2e-3)
    assert hparams["task"] == "classification" and hparams["train.batch_size"] == 8
    assert hparams["data.text_columns"] == '["sentence"]'  # lists go in as JSON text


def mlflow_client(run_dir: Path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=(run_dir / "trackers" / "mlflow").as_uri())


def mlflow_run(client):
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    [experiment] = experiments
    [run] = client.search_runs([experiment.experiment_id])
    return run


def test_mlflow_store_holds_metric_histories_and_params(tracked, monkeypatch):
    run_dir, _, _ = tracked
    client = mlflow_client(run_dir, monkeypatch)
    run = mlflow_run(client)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.learning_rate"] == "0.002"
    assert run.data.params["train.report_to"] == '["tensorboard", "mlflow"]'
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in losses) == list(range(1, 13))
    evaluations = jsonl(run_dir / "metrics.jsonl")
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval/f1"))
    assert history == [(r["step"], pytest.approx(r["f1"])) for r in evaluations]


def test_resume_continues_the_same_logs(tracked, tmp_path, monkeypatch):
    """Stopped after the step-4 checkpoint (steps 5-12 already logged, as after a kill): the resumed
    run adds to the same TensorBoard folder and MLflow run, and TensorBoard shows each step once."""
    run_dir, recipe, _ = tracked
    copy = rewind_to_checkpoint(run_dir, run_dir / "checkpoints" / "step-0000004", tmp_path / "run")
    mlflow_id = json.loads((copy / "trackers" / "run_ids.json").read_text())["mlflow"]
    result = run_cli("finetune", str(recipe), "--output-dir", str(copy), "--resume", env=ONE_THREAD)
    assert result.exit_code == EXIT_OK, result.stderr

    assert [r["step"] for r in jsonl(copy / "train_log.jsonl")] == list(range(1, 13))
    tags = scalars(tensorboard_dir(copy))
    assert [s for s, _ in tags["train/loss"]] == list(range(1, 13))
    assert [s for s, _ in tags["eval/accuracy"]] == EVAL_STEPS
    assert len(list(tensorboard_dir(copy).glob("events.out.tfevents.*"))) == 2  # the first run's and the resumed

    client = mlflow_client(copy, monkeypatch)
    run = mlflow_run(client)
    assert run.info.run_id == mlflow_id
    steps = sorted(m.step for m in client.get_metric_history(mlflow_id, "train/loss"))
    # MLflow cannot forget points: the steps after the checkpoint were logged by both runs.
    assert steps == sorted(list(range(1, 13)) + list(range(5, 13)))


def test_an_interrupted_run_is_killed_in_mlflow_and_finished_once_resumed(tiny_models, tmp_path, monkeypatch):
    train = write_csv(tmp_path / "train.csv", keyword_sentiment_rows(48, seed=0))
    valid = write_csv(tmp_path / "valid.csv", keyword_sentiment_rows(16, seed=1))
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_models["bert"], train, valid, tmp_path / "run",
                          train=TRAIN | {"report_to": ["mlflow"]})
    stopped = run_cli("finetune", str(recipe), env=ONE_THREAD | {"LLMCTL_FAULT": "sigterm@3"})
    assert stopped.exit_code == EXIT_INTERRUPTED, stopped.stderr
    client = mlflow_client(tmp_path / "run", monkeypatch)
    killed = mlflow_run(client)
    assert killed.info.status == "KILLED"
    resumed = run_cli("finetune", str(recipe), "--resume", env=ONE_THREAD)
    assert resumed.exit_code == EXIT_OK, resumed.stderr
    run = mlflow_run(client)
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"


class Listener:
    """A local port standing in for the W&B server: it counts every connection made to it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    url = property(lambda self: f"http://127.0.0.1:{self.sock.getsockname()[1]}")

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self):
        self.stopped.set()
        self.thread.join()
        self.sock.close()


def test_wandb_runs_offline_into_the_run_directory(tiny_models, tmp_path):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'llmctl[wandb]')")
    train = write_csv(tmp_path / "train.csv", keyword_sentiment_rows(16, seed=0))
    run_dir = tmp_path / "run"
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, train, run_dir,
                          train={"report_to": ["wandb"]})
    server = Listener()
    try:
        # WANDB_BASE_URL points W&B at the listener: any attempt to reach "the server" is counted.
        result = run_cli("finetune", str(recipe), "--json", env=ONE_THREAD | {
            "WANDB_BASE_URL": server.url, "WANDB_API_KEY": None, "WANDB_MODE": None, "WANDB_DIR": None,
            "HOME": str(tmp_path)})  # no ~/.netrc or ~/.config/wandb of the person running the tests
    finally:
        server.close()
    assert result.exit_code == EXIT_OK, result.stderr
    json.loads(result.stdout)  # W&B's own lines stay off stdout
    [offline] = (run_dir / "trackers" / "wandb").glob("offline-run-*")
    assert list(offline.glob("run-*.wandb"))
    assert server.connections == 0


def test_unknown_tracker_is_refused_naming_the_valid_ones(tiny_models, tmp_path):
    train = write_csv(tmp_path / "train.csv", keyword_sentiment_rows(16))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, train, tmp_path / "run",
                          train={"report_to": ["tensorboard", "neptune"]})
    result = run_cli("finetune", str(recipe))
    assert result.exit_code == EXIT_USAGE
    assert f"{recipe}:" in result.stderr
    assert "train.report_to: 'neptune' is not a tracker; choose from tensorboard, mlflow, wandb" in result.stderr
    assert not (tmp_path / "run").exists()


def test_missing_tracker_package_names_the_extra(tiny_models, tmp_path):
    """A real failed import (a sitecustomize that hides mlflow), before any model loads."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'mlflow' or name.startswith('mlflow.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Hide())\n")
    train = write_csv(tmp_path / "train.csv", keyword_sentiment_rows(16))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_models["bert"], train, train, tmp_path / "run",
                          train={"report_to": ["tensorboard", "mlflow"]})
    result = run_cli("finetune", str(recipe), env={"PYTHONPATH": f"{shim}:{REPO}"})
    assert result.exit_code == EXIT_USAGE, result.stderr
    assert error_lines(result.stderr) == [
        "error: train.report_to: mlflow is not installed. Install it with `pip install 'llmctl[mlflow]'` "
        "(all trackers: `pip install 'llmctl[trackers]'`), or remove mlflow from train.report_to."]
    assert not (tmp_path / "run").exists()


def picture(path: Path):
    """The PNG as an array, checked to be a real picture: large enough and not one flat colour."""
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] >= 300 and pixels.shape[1] >= 400, pixels.shape
    assert pixels[..., :3].std() > 0.05
    return pixels


def test_classification_run_leaves_pictures_and_diagnostics(tracked):
    """The shared run again: curves.png, the confusion matrix of the saved model and the numbers it
    draws (diagnostics.json), which agree with metrics.json."""
    run_dir, _, out = tracked
    picture(run_dir / "curves.png")
    picture(run_dir / "confusion_matrix.png")
    diagnostics = json.loads((run_dir / "diagnostics.json").read_text())
    assert diagnostics["task"] == "classification" and diagnostics["step"] == out["best_step"]
    assert diagnostics["labels"] == ["negative", "positive"]
    matrix = diagnostics["confusion_matrix"]
    assert sum(map(sum, matrix)) == 16  # every validation row once
    assert (matrix[0][0] + matrix[1][1]) / 16 == pytest.approx(out["metrics"]["accuracy"])
    positive = diagnostics["per_class"]["positive"]
    assert positive["support"] == 8 and positive["f1"] == pytest.approx(out["metrics"]["f1"])
    assert not list(run_dir.glob(".*.tmp"))  # pictures are written under a temporary name, then renamed
    from llmctl.runs.directory import RUN_ENTRIES

    assert {p.name for p in run_dir.iterdir()} <= RUN_ENTRIES  # so --overwrite removes all of it
