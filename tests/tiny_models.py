"""Build tiny, offline, pretrained-style checkpoints (BERT, GPT-2, T5, Llama, Qwen2) for tests.

The HF Hub is unreachable in CI, so tests cannot download e.g. `prajjwal1/bert-tiny`.
Instead we train real fast tokenizers on a small generated corpus and save
randomly initialised models with `save_pretrained`, so every `Auto*` loading path
of the tool is exercised exactly as with a Hub checkpoint.

transformers 5 note: `BertTokenizer`/`GPT2Tokenizer`/`T5Tokenizer` ARE the fast
(tokenizers-backed) classes now (`*Fast` are aliases).  On `from_pretrained` they
rebuild the backend from the vocab/merges in tokenizer.json with their own
hard-coded normalizer/pre-tokenizer/decoder, so we construct them from the
trained vocab (not `tokenizer_object=`) to make in-memory == reloaded behaviour.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

# Every printable ASCII char, so WordPiece/Unigram never emit [UNK] for plain text.
_ALPHABET = list(string.ascii_letters + string.digits + string.punctuation)
PEOPLE = ("Alice Bob Carla David Emma Farid Grace Hugo Ines John Kenji Laura Maria Nadia Oscar Priya "
           "Quentin Rosa Samuel Tomas Uma Victor Wendy Yusuf").split()
SURNAMES = "Smith Jones Diaz Chen Brown Khan Lee Martin Costa Miller Sato White Garcia Novak Rossi Silva".split()
PLACES = ("Paris London Berlin Tokyo Madrid Chicago Toronto Sydney Lisbon Oslo Cairo Seattle Dublin Vienna "
           "Lagos Mumbai Denver Boston Prague Lima").split()
ORGS = ["Acme Corp", "the United Nations", "Globex", "the City Council", "Initech", "the National Library",
         "Umbrella Labs", "the Red Cross", "Northwind Traders", "the Science Museum", "Blue River Bank"]
_ADJ = ("great wonderful brilliant moving funny charming beautiful excellent clever gripping delightful "
        "stunning powerful terrible boring awful dull weak messy painful forgettable clumsy tedious shallow "
        "predictable confusing bland lifeless").split()
_THINGS = ("movie film plot acting script soundtrack ending cast story dialogue pacing camera direction sequel "
           "performance characters").split()
_VERBS = "loved hated enjoyed disliked admired regretted recommended watched praised criticized forgot".split()
_ADV = "really very quite truly rather incredibly somewhat surprisingly always never often".split()
JOBS = "teacher doctor engineer writer manager lawyer pilot chef nurse scientist farmer singer".split()
QVERBS = "visit join leave found build sell buy study lead move".split()


def build_corpus(seed: int = 0, n: int = 600) -> list[str]:
    """Template sentences: reviews, people/places/organisations, questions + contexts.

    ~700 distinct words: tokenizers' UnigramTrainer only seeds pieces from substrings
    shared by several *distinct* words, so a poorer corpus collapses T5's vocab to ~350.
    """
    rng = random.Random(seed)
    c = rng.choice
    templates = [
        lambda p: f"The {c(_THINGS)} was {c(_ADV)} {c(_ADJ)} and I {c(_VERBS)} it.",
        lambda p: f"I {c(_ADV)} {c(_VERBS)} this {c(_THINGS)}, but the {c(_THINGS)} felt {c(_ADJ)}.",
        lambda p: f"{p} works as a {c(JOBS)} for {c(ORGS)} in {c(PLACES)}.",
        lambda p: f"When did {p} {c(QVERBS)} {c(ORGS)} in {c(PLACES)}? Who is the {c(JOBS)}?",
        lambda p: (f"In {1950 + rng.randrange(75)}, {c(ORGS)} opened an office in {c(PLACES)} "
                   f"with {rng.randrange(2, 900)} people, said {p}."),
        lambda p: f"{p} was born in {c(PLACES)} and later moved to {c(PLACES)} to become a {c(JOBS)}.",
    ]
    out = [templates[i % len(templates)](f"{c(PEOPLE)} {c(SURNAMES)}") for i in range(n)]
    # Lowercase copies: the cased tokenizers (GPT-2, T5) should also know lowercase pieces.
    return out + [s.lower() for s in out[:150]] + [" ".join(_ALPHABET)]


def _train_bert(corpus):
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # The trainer gives "##c" pieces ids in (random) HashMap order, which changes how merge
    # ties are broken from run to run; pre-seeding them (as "special" trainer tokens) makes
    # training deterministic.  Only the 5 real specials are special in the final tokenizer.
    seeded = specials + ["##" + ch for ch in _ALPHABET]
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(
        vocab_size=1000, special_tokens=seeded, initial_alphabet=_ALPHABET, show_progress=False))
    from transformers import BertTokenizerFast
    # BertTokenizer rebuilds BertNormalizer/BertPreTokenizer/WordPiece decoder and the
    # [CLS] $A [SEP] (+ $B:1 [SEP]:1) TemplateProcessing itself; only the vocab is needed.
    return BertTokenizerFast(vocab=tok.get_vocab(), do_lower_case=True, model_max_length=256)


def train_gpt2_tokenizer(corpus):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    from transformers import GPT2TokenizerFast
    # Like the real GPT-2: <|endoftext|> is bos/eos/unk and there is NO pad token.
    return GPT2TokenizerFast(vocab=model["vocab"], merges=merges, model_max_length=256)


def train_t5_tokenizer(corpus):
    tok = Tokenizer(models.Unigram())
    # Same pre-tokenizer T5Tokenizer hard-codes, so the trained pieces match at load time.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.train_from_iterator(corpus, trainers.UnigramTrainer(
        vocab_size=800, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
        initial_alphabet=_ALPHABET, show_progress=False))
    vocab = json.loads(tok.to_str())["model"]["vocab"]
    # T5Tokenizer hard-codes Unigram(unk_id=2) and the "$A </s>" template.
    assert [v[0] for v in vocab[:3]] == ["<pad>", "</s>", "<unk>"], vocab[:3]
    # Scores wobble in the last bits (parallel EM) and the trainer appends rare chars with
    # -0.0001 steps in HashMap order: round to 0.01 + sort so the vocab is byte-identical.
    vocab = [tuple(v) for v in vocab[:3]] + sorted(
        ((p, round(s, 2)) for p, s in vocab[3:]), key=lambda v: (-v[1], v[0]))
    from transformers import T5TokenizerFast
    # extra_ids=0: no <extra_id_*> sentinels (span corruption is not used by the tool).
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=256)


# ChatML, as SmolLM2-Instruct and Qwen2-Instruct ship it (Qwen2 adds a default system turn).
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' and SYSTEM %}"
          "{{ '<|im_start|>system\\n' + SYSTEM + '<|im_end|>\\n' }}{% endif %}"
          "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
CHAT_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _train_chat_bpe(corpus):
    """(vocab, merges) of a byte-level BPE with the ChatML specials first, as SmolLM2 / Qwen2 have."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=1000, special_tokens=CHAT_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    model = json.loads(tok.to_str())["model"]
    return model["vocab"], [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]


def _llama_tokenizer(corpus):
    """Like SmolLM2-Instruct: a GPT-2-style byte-level BPE, bos <|im_start|> (never added by
    encode), eos <|im_end|>, no pad token, ChatML template without a default system turn."""
    from transformers import GPT2TokenizerFast

    vocab, merges = _train_chat_bpe(corpus)
    tok = GPT2TokenizerFast(vocab=vocab, merges=merges, model_max_length=256, unk_token="<|endoftext|>",
                            bos_token="<|im_start|>", eos_token="<|im_end|>",
                            additional_special_tokens=CHAT_SPECIALS)
    tok.chat_template = CHATML.replace("SYSTEM", "''")
    return tok


def _qwen2_tokenizer(corpus):
    """Like Qwen2-Instruct: no bos, eos <|im_end|>, pad <|endoftext|>, a default system turn."""
    from transformers import Qwen2TokenizerFast

    vocab, merges = _train_chat_bpe(corpus)
    tok = Qwen2TokenizerFast(vocab=vocab, merges=merges, model_max_length=256, unk_token=None,
                             eos_token="<|im_end|>", pad_token="<|endoftext|>",
                             additional_special_tokens=CHAT_SPECIALS)
    tok.chat_template = CHATML.replace("SYSTEM", "'You are a helpful assistant.'")
    return tok


def build_tiny_models(dest: Path) -> dict[str, Path]:
    """Save tokenizer + tiny random model for "bert", "gpt2", "t5", "llama", "qwen2" under dest/<family>."""
    import torch
    from transformers import (BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel,
                              T5Config, T5ForConditionalGeneration)

    dest = Path(dest)
    corpus = build_corpus()
    out: dict[str, Path] = {}

    def save(family, tokenizer, model):
        path = dest / family
        model.save_pretrained(path)  # transformers 5 always writes model.safetensors
        tokenizer.save_pretrained(path)
        out[family] = path

    bert_tok = _train_bert(corpus)
    torch.manual_seed(0)
    # BertForMaskedLM = same layout as bert-base-uncased; Auto*For{Sequence,Token}Classification
    # / QuestionAnswering load the `bert.` weights and init fresh heads.
    save("bert", bert_tok, BertForMaskedLM(BertConfig(
        vocab_size=len(bert_tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=256, pad_token_id=bert_tok.pad_token_id)))

    gpt_tok = train_gpt2_tokenizer(corpus)
    eot = gpt_tok.eos_token_id
    torch.manual_seed(0)
    save("gpt2", gpt_tok, GPT2LMHeadModel(GPT2Config(
        vocab_size=len(gpt_tok), n_layer=2, n_embd=32, n_head=2, n_positions=256,
        bos_token_id=eot, eos_token_id=eot)))

    t5_tok = train_t5_tokenizer(corpus)
    torch.manual_seed(0)
    save("t5", t5_tok, T5ForConditionalGeneration(T5Config(
        vocab_size=len(t5_tok), d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2,
        num_heads=2, d_kv=16, pad_token_id=t5_tok.pad_token_id, eos_token_id=t5_tok.eos_token_id,
        decoder_start_token_id=t5_tok.pad_token_id)))

    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    decoder = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True)
    llama_tok = _llama_tokenizer(corpus)
    torch.manual_seed(0)
    save("llama", llama_tok, LlamaForCausalLM(LlamaConfig(
        vocab_size=len(llama_tok), bos_token_id=llama_tok.bos_token_id, eos_token_id=llama_tok.eos_token_id,
        **decoder)))
    qwen_tok = _qwen2_tokenizer(corpus)
    torch.manual_seed(0)
    save("qwen2", qwen_tok, Qwen2ForCausalLM(Qwen2Config(
        vocab_size=len(qwen_tok), eos_token_id=qwen_tok.eos_token_id, pad_token_id=qwen_tok.pad_token_id,
        **decoder)))
    return out


if __name__ == "__main__":  # handy for manual inspection: python tests/tiny_models.py /tmp/tiny
    import sys

    print(build_tiny_models(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny_models")))
