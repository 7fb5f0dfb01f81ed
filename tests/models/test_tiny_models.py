"""The tiny offline checkpoints must load and run through every Auto* path the tool uses."""

import filecmp

import pytest
import torch
from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForQuestionAnswering,
                          AutoModelForSeq2SeqLM, AutoModelForSequenceClassification,
                          AutoModelForTokenClassification, AutoTokenizer)

FAMILIES = ["bert", "gpt2", "t5"]
TEXTS = ["the movie was great .", "i really hated this film , the ending felt dull ."]
QUESTIONS = ["who works for acme corp ?", "when did alice visit paris ?"]
CONTEXTS = ["alice smith works as a teacher for acme corp in paris .", "alice visited paris in 1999 ."]


def load_tokenizer(path, **kwargs):
    tok = AutoTokenizer.from_pretrained(path, **kwargs)
    if tok.pad_token is None:  # GPT-2 has no pad token: the tool reuses eos, as done here
        tok.pad_token = tok.eos_token
    return tok


@pytest.mark.parametrize("family", FAMILIES)
def test_auto_tokenizer_and_config(tiny_models, family):
    path = tiny_models[family]
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    assert AutoConfig.from_pretrained(path).model_type == family
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.is_fast and 300 < len(tok) <= 1000 and tok.model_max_length == 256
    if family == "gpt2":  # like the real GPT-2: the tool must cope with a missing pad token
        assert tok.pad_token is None and tok.eos_token == tok.bos_token == "<|endoftext|>"
    else:
        assert tok.pad_token_id == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_sequence_classification(tiny_models, family):
    tok = load_tokenizer(tiny_models[family])
    model = AutoModelForSequenceClassification.from_pretrained(tiny_models[family], num_labels=2)
    model.config.pad_token_id = tok.pad_token_id  # needed by GPT-2 to find the last real token
    model.eval()
    with torch.no_grad():
        single = model(**tok(TEXTS, padding=True, return_tensors="pt"))
        pair = model(**tok(QUESTIONS, CONTEXTS, padding=True, truncation=True, return_tensors="pt"))
    assert single.logits.shape == pair.logits.shape == (2, 2)


@pytest.mark.parametrize("family", FAMILIES)
def test_token_classification_and_qa(tiny_models, family):
    path = tiny_models[family]
    words = [t.split() for t in TEXTS]
    # GPT-2's byte-level BPE only accepts pre-split words with add_prefix_space=True.
    tok = load_tokenizer(path, **({"add_prefix_space": True} if family == "gpt2" else {}))
    enc = tok(words, is_split_into_words=True, padding=True, return_tensors="pt")
    for i, ws in enumerate(words):
        ids = [w for w in enc.word_ids(i) if w is not None]
        assert ids == sorted(ids) and set(ids) == set(range(len(ws)))
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=3)
    model.config.pad_token_id = tok.pad_token_id
    with torch.no_grad():
        assert model(**enc).logits.shape == (*enc["input_ids"].shape, 3)

    qa = AutoModelForQuestionAnswering.from_pretrained(path)
    qa.config.pad_token_id = tok.pad_token_id
    batch = tok(QUESTIONS, CONTEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = qa(**batch)
    assert out.start_logits.shape == out.end_logits.shape == batch["input_ids"].shape


@pytest.mark.parametrize("family", FAMILIES)
def test_offsets_cover_text(tiny_models, family):
    tok = AutoTokenizer.from_pretrained(tiny_models[family])
    text = CONTEXTS[0]
    enc = tok(text, return_offsets_mapping=True)
    assert len(enc["offset_mapping"]) == len(enc["input_ids"])
    covered = set()
    for start, end in enc["offset_mapping"]:
        assert 0 <= start <= end <= len(text)
        covered.update(range(start, end))
    # QA answer-span mapping needs every non-space character to belong to some token.
    assert {i for i, ch in enumerate(text) if not ch.isspace()} <= covered


@pytest.mark.parametrize("family", FAMILIES)
def test_decode_roundtrip(tiny_models, family):
    tok = AutoTokenizer.from_pretrained(tiny_models[family])
    text = "alice smith loved the movie, and it was great."
    ids = tok(text)["input_ids"]
    assert tok.unk_token_id not in ids  # the corpus alphabet covers plain ASCII text
    assert tok.decode(ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("family,auto", [("gpt2", AutoModelForCausalLM), ("t5", AutoModelForSeq2SeqLM)])
def test_generate(tiny_models, family, auto):
    tok = load_tokenizer(tiny_models[family])
    if family == "gpt2":
        tok.padding_side = "left"  # decoder-only generation needs left padding
    model = auto.from_pretrained(tiny_models[family])
    batch = tok(["the movie was", "alice smith works"], padding=True, return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[0] == 2 and out.shape[1] > (batch["input_ids"].shape[1] if family == "gpt2" else 1)
    assert all(isinstance(s, str) for s in tok.batch_decode(out, skip_special_tokens=True))


def test_build_is_deterministic(tiny_models, tmp_path):
    from tiny_models import build_tiny_models

    again = build_tiny_models(tmp_path)
    for family, path in tiny_models.items():
        names = sorted(p.name for p in path.iterdir())
        assert names == sorted(p.name for p in again[family].iterdir())
        _, mismatch, errors = filecmp.cmpfiles(path, again[family], names, shallow=False)
        assert not mismatch and not errors, (family, mismatch, errors)
