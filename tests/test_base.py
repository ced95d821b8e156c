"""base.py: the generic skills say what they do, the tokenizer keeps text exactly, and the
committed embedded model loads with a tokenizer that fits it."""
import random
import re

import pytest
import torch

import base
import tasks
from model import load_meta


def bracketed(text):
    return text.replace("]", "[").split("[")[1::2]


def split_request(prompt):
    """(verb, line) from either framing base.frame writes, below any other lines (--context)."""
    above, body, end = prompt.rsplit("\n", 2) if prompt.count("\n") > 1 else ("", *prompt.split("\n"))
    if end.split(". ")[0].endswith(" the line above"):
        return end.split(" the line above")[0], body
    verb, line = body.split(": ", 1)
    return verb, line


def value(expr):
    """The value of a sum "3 + -2" or the larger of "5, 3 + 4" as written by base.signed_fact."""
    return max(sum(int(t) for t in part.split(" + ")) for part in expr.split(", "))


@pytest.mark.parametrize("long_lists, context, numbers",
                         [(False, 0, False), (True, 0, False), (True, 0.5, False), (True, 0.25, True)])
def test_generic_skills_say_what_they_do(long_lists, context, numbers):
    rng = random.Random(0)
    checked = set()
    for _ in range(600 if not numbers else 1200):
        pair = base.generic_pair(rng, long_lists, context, numbers)
        verb, line = split_request(pair.prompt)
        x = re.search(r"-?\d+", verb)  # only a "prepend" verb holds a number
        skill = next(s for s, verbs in base.VERBS.items()
                     if any(verb == v.format(x=x and x.group()) for v in verbs))
        checked.add(skill)
        if skill in ("add", "max"):
            assert int(pair.target) == value(line)
        elif skill == "copy":
            assert pair.target == line
        elif "[" not in line or pair.target == "empty":
            continue  # digit strings: the same rules, but no brackets to split on
        elif skill == "prepend":
            assert [f"{x.group()}, {a}" for a in bracketed(line)] == bracketed(pair.target)
        elif skill == "drop":
            assert [a.split(", ", 1)[1] for a in bracketed(line)] == bracketed(pair.target)
        else:
            at = 0 if skill == "first" else -1
            assert pair.target.split(" ") == [a.split(", ")[at] for a in bracketed(line)]
    assert checked == set(base.VERBS) - ({"max"} if not numbers else set())


def test_long_lists_make_lists_longer():
    def mean_items(long_lists):  # items per bracketed list
        pairs = [p for p, _ in zip(base.generic_stream(3, long_lists), range(3000))]
        counts = [a.count(",") + 1 for p in pairs for a in bracketed(split_request(p.prompt)[1])]
        return sum(counts) / len(counts)
    plain, long = mean_items(False), mean_items(True)
    assert 1.2 < long / plain < 1.45  # max of two uniform draws: mean 2/3 of the maximum, not 1/2


@pytest.mark.parametrize("share", [0.5, 0.25])
def test_context_puts_other_lines_above_its_share_of_the_requests(share):
    plain = [p.prompt for p, _ in zip(base.generic_stream(3), range(800))]
    mixed = [p.prompt for p, _ in zip(base.generic_stream(3, context=share), range(800))]
    assert all(p.count("\n") == 1 for p in plain)
    above = [p.count("\n") - 1 for p in mixed]
    assert set(above) == {0, 1, 2, 3} and abs(sum(a > 0 for a in above) / len(above) - share * 7 / 8) < 0.05  # 1 in 8 is a sum, alone


def test_numbers_adds_two_digit_lists_and_signed_sums_and_leaves_the_old_corpus_alone():
    def draws(**flags):
        return [p.prompt + p.target for p, _ in zip(base.generic_stream(3, **flags), range(2000))]
    assert draws() == draws(numbers=False) and draws() != draws(numbers=True)
    text = "".join(draws(numbers=True))
    assert re.search(r"\[(-?\d+, )*[12]\d, ", text)  # lists with numbers of two digits
    assert re.search(r"\d \+ -\d", text) and "Max of: " in text


def test_pairs_puts_two_sequences_on_half_the_lines_and_leaves_the_old_corpus_alone():
    def lines(**flags):  # the bracketed lists of each list request (sums and digit strings left out)
        pairs = [p for p, _ in zip(base.generic_stream(5, **flags), range(1500))]
        return [bracketed(split_request(p.prompt)[1]) for p in pairs if "[" in p.prompt]
    assert lines() == lines(pairs=False)
    share = lambda found: sum(len(b) == 2 for b in found) / len(found)  # noqa: E731
    assert 0.25 < share(lines()) < 0.42 and 0.42 < share(lines(pairs=True)) < 0.58  # 1/3, then 1/2


@pytest.mark.parametrize("share", [0.5, 1.0])
def test_plain_keeps_its_share_of_the_requests_on_one_line_and_leaves_the_old_corpus_alone(share):
    mixed = dict(context=1.0, numbers=True, pairs=True)
    def prompts(**flags):
        return [p.prompt for p, _ in zip(base.generic_stream(4, **flags), range(1200))]
    assert prompts(**mixed) == prompts(**mixed, plain=0.0)
    one_line = sum(p.count("\n") == 1 for p in prompts(**mixed, plain=share)) / 1200
    assert abs(one_line - (share + (1 - share) / 8)) < 0.05  # sums (1 in 8) stay on one line anyway


def test_a_leg_from_a_model_continues_it(tmp_path, tiny_ckpt):
    out = tmp_path / "model"
    base.main(["--from", str(tiny_ckpt), "--long-lists", "--steps", "2", "--batch-size", "2",
               "--warmup", "1", "--work", str(tmp_path / "work"), "--out", str(out)])
    before, _ = load_meta(tiny_ckpt, device="cpu")
    after, tokenizer = load_meta(out, device="cpu")
    assert (tiny_ckpt / "tokenizer.model").read_bytes() == (out / "tokenizer.model").read_bytes()
    assert after.args == before.args
    changed = [n for n, p in after.state_dict().items() if not torch.equal(p, before.state_dict()[n])]
    assert "layers.0.attention.wq.weight" in changed
    assert not (tmp_path / "work" / "init").exists()  # no fresh random model made


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


def test_grow_adds_blocks_that_start_as_the_identity(tmp_path, tiny_ckpt):
    grown = base.grow(tiny_ckpt, tmp_path / "grown", every=1)
    small, tokenizer = load_meta(tiny_ckpt, device="cpu")
    again, _ = load_meta(tmp_path / "grown", device="cpu")  # saved in Meta's format
    assert grown.args.n_layers == again.args.n_layers == 2 * small.args.n_layers
    x = torch.tensor([tokenizer.encode("Copy: [1, 0, 1]\nOut: ", bos=True)])
    with torch.no_grad():
        torch.testing.assert_close(again(x), small(x), atol=0, rtol=0)  # zeroed outputs add nothing
    new = again.layers[1]
    assert torch.equal(new.attention.wq.weight, small.layers[0].attention.wq.weight)
    assert not new.attention.wo.weight.any() and not new.feed_forward.w2.weight.any()
    with pytest.raises(SystemExit):
        base.main(["--grow", "2", "--steps", "1"])  # --grow needs --from
