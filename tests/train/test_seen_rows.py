"""Training only the seen embedding rows is bitwise the same AdamW run as training all of them."""

import pytest
import torch
from transformers import (BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel,
                          T5Config, T5ForSequenceClassification)

from llmctl.train.optim import build_optimizer
from llmctl.train.speedups.seen_rows import SeenRowsEmbedding, decay_unseen_rows, seen_token_ids, train_seen_rows_only


class _Cfg:
    learning_rate = 1e-2
    adam_beta1, adam_beta2, adam_epsilon = 0.9, 0.999, 1e-8
    optimizer = "adamw"

    def __init__(self, weight_decay):
        self.weight_decay = weight_decay


def _bert():
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0))


def _batches():
    torch.manual_seed(1)
    ids = torch.randint(1, 30, (6, 4, 7))  # only ids 1..29 of 60 ever occur
    ids[:, 1, 5:] = 0  # padding
    return ids, torch.randint(0, 2, (6, 4))


def _train(model, weight_decay, seen=False):
    ids, labels = _batches()
    embedding = train_seen_rows_only(model, seen_token_ids({"input_ids": ids.reshape(-1, 7).tolist()}, [0])) if seen else None
    optimizer = build_optimizer(model, _Cfg(weight_decay))
    if embedding is not None:
        decay_unseen_rows(optimizer, embedding)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / 10)
    model.train()
    for batch, label in zip(ids, labels):
        model(input_ids=batch, attention_mask=(batch != 0).long(), labels=label).loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return embedding


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_same_weights_bit_for_bit_as_training_every_row(weight_decay):
    dense, sparse = _bert(), _bert()
    _train(dense, weight_decay)
    embedding = _train(sparse, weight_decay, seen=True)
    assert isinstance(embedding, SeenRowsEmbedding) and len(embedding.rows) == 30  # 0..29
    theirs, ours = dense.state_dict(), sparse.state_dict()
    assert set(ours) == set(theirs)  # `weight` again, no `trained` key
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key
    if weight_decay:  # the unseen rows moved, by the decay alone
        assert not torch.equal(ours["bert.embeddings.word_embeddings.weight"][40:],
                               _bert().state_dict()["bert.embeddings.word_embeddings.weight"][40:])


def test_loading_a_state_dict_splits_it_and_unseen_tokens_work_in_eval():
    model = _bert()
    _train(model, 0.01, seen=True)
    other = _bert()
    seen = train_seen_rows_only(other, torch.arange(1, 30))
    other.load_state_dict(model.state_dict())
    assert torch.equal(other.state_dict()["bert.embeddings.word_embeddings.weight"],
                       model.state_dict()["bert.embeddings.word_embeddings.weight"])
    assert torch.equal(seen.trained, model.get_input_embeddings().trained)
    ids = torch.tensor([[1, 45, 2, 59]])  # 45 and 59 never occurred in training
    model.eval()
    plain = _bert().eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, plain(input_ids=ids).logits)
    model.train()
    with pytest.raises(RuntimeError, match="not among the trained rows"):
        model(input_ids=ids)


def test_not_used_where_the_embedding_is_also_an_output_layer_or_shared_with_a_decoder():
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=16))
    t5 = T5ForSequenceClassification(T5Config(vocab_size=50, d_model=16, d_ff=32, num_layers=1,
                                              num_heads=2, d_kv=8, decoder_start_token_id=0))
    for model in (lm, t5):
        before = model.get_input_embeddings()
        assert train_seen_rows_only(model, torch.arange(10)) is None
        assert model.get_input_embeddings() is before
