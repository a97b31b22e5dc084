"""The decoding loop against ``model.generate`` on a tiny random Llama (+ a real peft adapter)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from domain_eval.decoding import DecodeSettings, common_prefix_length, decode
from domain_eval.generation import DomainNameGenerator, GenerationConfig, plan_batches
from domain_eval.prompts import build_prompt

DESCRIPTIONS = [
    "yoga studio",
    "organic coffee shop in downtown Portland",
    "quantum computing research laboratory for battery materials and solid state chemistry",
    "bakery",
]


@pytest.fixture(scope="module")
def gen(tiny_base: Path, tiny_adapters: dict[str, Path]) -> DomainNameGenerator:
    return DomainNameGenerator(base_model=str(tiny_base), adapter={k: str(v) for k, v in tiny_adapters.items()},
                               quant="none", config=GenerationConfig(max_new_tokens=16), safety=None)


def _prompts(gen: DomainNameGenerator) -> list[list[int]]:
    return [gen.tokenizer(build_prompt(gen.tokenizer, d), add_special_tokens=False).input_ids for d in DESCRIPTIONS]


def _hf_one_at_a_time(gen: DomainNameGenerator, prompts: list[list[int]], **kwargs: Any) -> list[list[int]]:
    import torch

    tok = gen.tokenizer
    out = []
    with torch.inference_mode():
        for ids in prompts:
            full = gen.model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                      max_new_tokens=16, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                      do_sample=False, temperature=None, top_p=None, top_k=None, **kwargs)
            out.append(full[0, len(ids):].tolist())
    # generate pads finished rows; decode stops at EOS.
    return [row[: row.index(tok.eos_token_id) + 1] if tok.eos_token_id in row else row for row in out]


def _settings(gen: DomainNameGenerator, **kwargs: Any) -> DecodeSettings:
    return DecodeSettings(max_new_tokens=16, eos_token_id=gen.tokenizer.eos_token_id,
                          pad_token_id=gen.tokenizer.pad_token_id, **kwargs)


@pytest.mark.parametrize("share_prefix", [True, False])
def test_batched_decode_equals_generate_one_prompt_at_a_time(gen: DomainNameGenerator, share_prefix: bool) -> None:
    gen.use("a1")
    prompts = _prompts(gen)
    assert common_prefix_length(prompts) >= 8  # the shared-prefix pass really runs
    assert decode(gen.model, prompts, _settings(gen, share_prefix=share_prefix)) == _hf_one_at_a_time(gen, prompts)


def test_repetition_penalty_follows_generate(gen: DomainNameGenerator) -> None:
    gen.use("a2")
    prompts = _prompts(gen)
    ours = decode(gen.model, prompts, _settings(gen, repetition_penalty=1.8))
    assert ours == _hf_one_at_a_time(gen, prompts, repetition_penalty=1.8)
    assert ours != decode(gen.model, prompts, _settings(gen))


def _early_stop(full: list[list[int]], at_most: int = 3) -> tuple[int, int] | None:
    """(row, stop length) for a real early stop: the row is longer than that in full, and another
    row writes on after it is dropped. Middle rows first, so later rows' batch positions shift.

    Chosen from the output, not fixed: which row the tiny random model keeps writing depends on
    float rounding in its few seconds of training (CPU kernels, library versions)."""
    rows = len(full)
    for row in sorted(range(rows), key=lambda r: (r in (0, rows - 1), r)):
        for stop in range(min(at_most, len(full[row]) - 1), 0, -1):
            if any(len(full[other]) > stop for other in range(rows) if other != row):
                return row, stop
    return None


def test_early_stop_is_chosen_from_the_output() -> None:
    assert _early_stop([[1] * 16, [1] * 16, [1] * 10, [1] * 11]) == (1, 3)
    assert _early_stop([[1] * 5, [1, 2], [1] * 3, [1]]) == (1, 1)  # row 1 stops after 1 of its 2 tokens
    assert _early_stop([[1] * 5, [1], [1], [1] * 4]) == (0, 3)
    assert _early_stop([[1], [1], [1] * 9, [1]]) is None  # only one row writes on: nothing to leave unchanged


def test_a_row_stopped_early_leaves_the_others_unchanged(gen: DomainNameGenerator) -> None:
    gen.use("a1")
    prompts = _prompts(gen)
    full = decode(gen.model, prompts, _settings(gen))
    plan = _early_stop(full)
    assert plan is not None, f"the tiny model's greedy outputs ({[len(r) for r in full]} tokens) leave no row to stop early"
    row, stop = plan
    assert len(full[row]) > stop
    calls: list[int] = []

    def is_complete(r: int, toks: list[int]) -> bool:
        calls.append(r)
        return r == row and len(toks) == stop

    stopped = decode(gen.model, prompts, _settings(gen), is_complete=is_complete)
    assert stopped[row] == full[row][:stop]
    assert [r for i, r in enumerate(stopped) if i != row] == [r for i, r in enumerate(full) if i != row]
    assert calls.count(row) == stop  # never asked again once dropped


def test_decode_rejects_empty_prompts(gen: DomainNameGenerator) -> None:
    with pytest.raises(ValueError, match="empty prompt"):
        decode(gen.model, [[1, 2], []], _settings(gen))


def test_answer_complete_waits_for_n_finished_lines(gen: DomainNameGenerator) -> None:
    complete = gen._answer_complete(2)
    tok = gen.tokenizer

    def ids(text: str) -> list[int]:
        return tok(text, add_special_tokens=False).input_ids

    assert not complete(0, ids("alpha.com\nbeta.co"))  # the second domain may still grow
    assert not complete(0, ids("alpha.com\nalpha.com\n"))  # a repeat is not a second domain
    assert complete(0, ids("alpha.com\nbeta.com\n"))


def test_plan_batches_bounds_rows_and_padded_tokens() -> None:
    lengths = [10, 10, 10, 40, 40, 200]
    batches = plan_batches(range(6), lengths, batch_size=4, max_tokens=100)
    assert batches == [[0, 1, 2], [3, 4], [5]]
    assert sum(batches, []) == list(range(6))
    assert plan_batches(range(6), lengths, batch_size=2, max_tokens=10_000) == [[0, 1], [2, 3], [4, 5]]


def test_tiny_model_build_ignores_and_keeps_global_torch_state(tmp_path: Path) -> None:
    """The session's tiny model must not depend on what ran before, nor change what runs after."""
    import torch

    from domain_eval.testing import build_tiny_llama

    before = torch.get_num_threads()
    weights = []
    try:
        for threads, draws in ((1, 0), (2, 5)):
            torch.set_num_threads(threads)
            torch.manual_seed(123)
            torch.rand(draws)
            state = torch.get_rng_state()
            out = build_tiny_llama(tmp_path / f"t{threads}", pretrain_steps=3)
            weights.append((out / "model.safetensors").read_bytes())
            assert torch.get_num_threads() == threads
            assert torch.equal(torch.get_rng_state(), state)  # the global RNG was not reseeded
    finally:
        torch.set_num_threads(before)
    assert weights[0] == weights[1]


def test_may_end_vetoes_end_of_turn_for_its_row_only(gen: DomainNameGenerator) -> None:
    gen.use("a1")
    prompts = _prompts(gen)
    eos = gen.tokenizer.eos_token_id
    free = decode(gen.model, prompts, _settings(gen))
    assert any(row[-1] == eos for row in free)  # the tiny model does end its turn early, so the veto has work
    held = decode(gen.model, prompts, _settings(gen), may_end=lambda row, tokens: row != 0)
    assert len(held[0]) == 16 and eos not in held[0]
    assert held[1:] == free[1:]  # other rows decode exactly as without the veto


def test_banned_tokens_are_never_written_and_only_in_their_row(gen: DomainNameGenerator) -> None:
    gen.use("a1")
    prompts = _prompts(gen)
    free = decode(gen.model, prompts, _settings(gen))
    first = free[0][0]
    held = decode(gen.model, prompts, _settings(gen), banned=lambda row, tokens: [first] if row == 0 else [])
    assert first not in held[0]
    assert held[1:] == free[1:]


def test_distinct_lines_make_a_line_leave_an_earlier_line_after_its_first_token(gen: DomainNameGenerator) -> None:
    # The tiny random model never repeats a line, so the rule is checked on real token ids
    # (its effect on real answers is measured in benchmarks/decoding_quality.py).
    banned = gen._line_divergence()
    tok = gen.tokenizer

    def ids(text: str) -> list[int]:
        return tok(text, add_special_tokens=False).input_ids

    first_line = ids("pocho.com\n")
    assert banned(0, first_line) == []  # a new line may start with any token
    assert banned(0, first_line + first_line[:1]) == [first_line[1]]  # but must not go on as 'pocho.com'
    assert banned(0, first_line + ids("zz")) == []  # a line that already differs is free


def test_a_generator_per_row_samples_the_same_tokens_alone_or_batched(gen: DomainNameGenerator) -> None:
    import torch

    gen.use("a1")
    prompts = _prompts(gen)

    def generators(seeds: list[int]) -> list[Any]:
        return [torch.Generator().manual_seed(s) for s in seeds]

    seeds = [11 + i for i in range(len(prompts))]
    settings = _settings(gen, greedy=False, temperature=1.0, top_p=1.0)
    together = decode(gen.model, prompts, settings, generator=generators(seeds))
    alone = [decode(gen.model, [p], settings, generator=generators([s]))[0] for p, s in zip(prompts, seeds)]
    assert together == alone
    # The seed decides: another seed for row 0 changes row 0 and leaves the others as they were.
    reseeded = decode(gen.model, prompts, settings, generator=generators([99, *seeds[1:]]))
    assert reseeded[0] != together[0] and reseeded[1:] == together[1:]
