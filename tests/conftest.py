"""Shared fixtures: tiny configurations and a tiny sentencepiece tokenizer made on the spot."""
import sys
from pathlib import Path

import pytest
import sentencepiece as spm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from model import ModelArgs, Tokenizer, Transformer  # noqa: E402

torch.set_num_threads(1)  # tensors here are tiny: a second thread only waits


def tiny_args(vocab_size=96, **kw):
    base = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=None, vocab_size=vocab_size,
                multiple_of=16, norm_eps=1e-5, max_seq_len=128)
    base.update(kw)
    return ModelArgs(**base)


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    model = Transformer(tiny_args(**kw))
    for p in model.parameters():  # default init is too tame to catch small bugs
        torch.nn.init.normal_(p, std=0.3 if p.dim() == 1 else 0.08)
    return model.eval()


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    text = ["What is the parity of [1, 0, 1, 1]?", "73199 + 21439", "Answer: 94638",
            "Call: Create dp array [3, -2, 1, 5]", "Return: Carry 1, Output 2"] * 50
    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(text), model_prefix=str(d / "tokenizer"), vocab_size=60,
        model_type="bpe", split_digits=True, hard_vocab_limit=False, minloglevel=2)
    return d / "tokenizer.model"


@pytest.fixture(scope="session")
def tokenizer(tokenizer_path):
    return Tokenizer(tokenizer_path)


@pytest.fixture(scope="session")
def project_tokenizer(tmp_path_factory):
    """The embedded model's tokenizer recipe (base.py), trained afresh: knows every task string."""
    from base import train_tokenizer
    return train_tokenizer(tmp_path_factory.mktemp("project_tok"))


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, project_tokenizer):
    """A tiny random LLaMA in Meta's format, with the project tokenizer: a stand-in base model."""
    from model import save_meta
    d = tmp_path_factory.mktemp("tiny_ckpt")
    save_meta(tiny_model(vocab_size=project_tokenizer.n_words, n_kv_heads=2), project_tokenizer, d)
    return d
