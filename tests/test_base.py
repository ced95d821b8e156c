"""base.py: the generic skills say what they do, the tokenizer keeps text exactly, and the
committed embedded model loads with a tokenizer that fits it."""
import random

import pytest
import torch

import base
import tasks
from model import load_meta


def bracketed(text):
    return text.replace("]", "[").split("[")[1::2]


def test_generic_skills_say_what_they_do():
    rng = random.Random(0)
    checked = set()
    for _ in range(400):
        pair = base.generic_pair(rng)
        verb, rest = pair.prompt.split(": ", 1)
        line = rest.rsplit("\n", 1)[0]
        if verb in ("Copy", "Repeat"):
            assert pair.target == line
        elif "[" not in line or pair.target == "empty":
            continue  # digit strings: the same rules, but no brackets to split on
        elif verb.startswith("Prepend"):
            x = verb.split()[1]
            assert [f"{x}, {a}" for a in bracketed(line)] == bracketed(pair.target)
        elif verb in ("Drop the first of", "Tail of"):
            assert [a.split(", ", 1)[1] for a in bracketed(line)] == bracketed(pair.target)
        elif verb in ("First of", "Last of"):
            at = 0 if verb == "First of" else -1
            assert pair.target.split(" ") == [a.split(", ")[at] for a in bracketed(line)]
        checked.add(verb.split()[0])
    assert checked == {"Copy", "Repeat", "Prepend", "Drop", "Tail", "First", "Last"}


def test_tokenizer_keeps_task_text_exactly(project_tokenizer):
    for task in tasks.TASKS:
        for method in tasks.METHODS:
            for pair in tasks.pairs(task, method, tasks.eval_problems(task, 4, 1, seed=1)[0]):
                for text in (*pair.segments, pair.target):
                    ids = project_tokenizer.encode(text)
                    assert project_tokenizer.decode(ids) == text
                    assert 0 not in ids  # no unknown pieces


@pytest.mark.skipif(not (base.EMBEDDED / "params.json").exists(), reason="assets/tiny-llama not built")
def test_embedded_model_loads_and_fits():
    model, tokenizer = load_meta(base.EMBEDDED, device="cpu")
    assert model.args.vocab_size == tokenizer.n_words
    ids = tokenizer.encode(tasks.inference_prompt("parity", "retuning", (1, 0, 1)))
    with torch.no_grad():
        assert model(torch.tensor([ids])).shape == (1, len(ids), tokenizer.n_words)
