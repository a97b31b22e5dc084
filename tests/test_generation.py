"""Generator tests on a tiny random Llama: batching, seeding, adapter switching on one base."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from domain_eval.generation import DomainNameGenerator, GenerationConfig, rank_domains
from domain_eval.models import AdapterMismatch, ModelLoadError, load_base

DESCRIPTIONS = ["organic coffee shop in downtown Portland", "yoga studio", "quantum computing research laboratory for materials"]


@pytest.fixture(scope="module")
def gen(tiny_base: Path, tiny_adapters: dict[str, Path]) -> DomainNameGenerator:
    return DomainNameGenerator(
        base_model=str(tiny_base), adapter={k: str(v) for k, v in tiny_adapters.items()}, quant="none",
        config=GenerationConfig(max_new_tokens=12, batch_size=2),
    )


def test_batch_matches_one_by_one_under_greedy(gen: DomainNameGenerator) -> None:
    gen.use("a1")
    batched = [g.raw for g in gen.generate(DESCRIPTIONS)]
    single = [gen.generate([d])[0].raw for d in DESCRIPTIONS]
    assert batched == single


def test_results_keep_input_order_despite_length_sorting(gen: DomainNameGenerator) -> None:
    out = gen.generate(list(reversed(DESCRIPTIONS)))
    assert [g.description for g in out] == list(reversed(DESCRIPTIONS))


def test_seeded_sampling_is_reproducible_and_seed_sensitive(gen: DomainNameGenerator) -> None:
    gen.use("a1")
    a = [g.raw for g in gen.generate(DESCRIPTIONS, seed=7)]
    b = [g.raw for g in gen.generate(DESCRIPTIONS, seed=7)]
    c = [g.raw for g in gen.generate(DESCRIPTIONS, seed=8)]
    assert a == b
    assert a != c


def test_adapter_switching_changes_output_without_reloading_base(gen: DomainNameGenerator) -> None:
    base_model_id = id(gen.model.base_model.model)
    outs = {}
    for name in ("a1", "a2", "base"):
        gen.use(name)
        outs[name] = [g.raw for g in gen.generate(DESCRIPTIONS)]
        assert all(g.adapter == name for g in gen.generate(DESCRIPTIONS[:1]))
    assert len({tuple(v) for v in outs.values()}) == 3, outs
    assert id(gen.model.base_model.model) == base_model_id
    gen.use("a1")
    assert [g.raw for g in gen.generate(DESCRIPTIONS)] == outs["a1"]


def test_unknown_adapter_and_empty_description_are_clear_errors(gen: DomainNameGenerator) -> None:
    with pytest.raises(KeyError, match="not loaded"):
        gen.use("v9")
    with pytest.raises(ValueError, match="empty"):
        gen.generate(["ok", "   "])


def test_adapter_trained_on_another_base_is_rejected(tiny_base: Path, tiny_adapters: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    other = tmp_path / "other"
    shutil.copytree(tiny_adapters["a1"], other)
    (other / "training_meta.json").write_text(json.dumps({"base_model": "TinyLlama/TinyLlama-1.1B-Chat-v1.0"}))
    with pytest.raises(AdapterMismatch, match="TinyLlama"):
        DomainNameGenerator(base_model=str(tiny_base), adapter=str(other), quant="none")


def test_missing_adapter_names_the_folder(tiny_base: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="adapter 'v42' not found"):
        DomainNameGenerator(base_model=str(tiny_base), adapter="v42", quant="none", models_dir=tmp_path)


def test_offline_unknown_hf_id_fails_with_one_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="huggingface-cli download"):
        load_base("TinyLlama/TinyLlama-1.1B-Chat-v1.0-not-cached-anywhere", quant="none")


def test_rank_domains_dedupes_validates_and_ranks() -> None:
    text = "1. **CoffeePDX.com**\n- coffeepdx.com\n- thelondon's.io\n- xq-z9.net\n- organiccoffee.com"
    ranked, dropped = rank_domains(text, "organic coffee shop in Portland", n=5)
    names = [d for d, _ in ranked]
    assert sorted(names) == sorted(["coffeepdx.com", "xq-z9.net", "organiccoffee.com"])
    assert ranked[0][0] == "organiccoffee.com" and names[-1] == "xq-z9.net"
    assert all(0.0 <= c <= 1.0 for _, c in ranked)
    assert dropped == []


def test_four_bit_loads_on_cpu_with_bitsandbytes(tiny_base: Path) -> None:
    loaded = load_base(str(tiny_base), quant="4bit", cpu_kernel="bnb")
    import bitsandbytes as bnb

    assert loaded.quant == "4bit" and loaded.kernel == "bnb-4bit"
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in loaded.model.modules())


def test_cpu_inference_dequantizes_the_nf4_weights_once(tiny_base: Path) -> None:
    import bitsandbytes as bnb
    import torch
    from bitsandbytes.functional import dequantize_4bit

    reference = load_base(str(tiny_base), quant="4bit", cpu_kernel="bnb").model
    loaded = load_base(str(tiny_base), quant="4bit")
    assert loaded.kernel == "nf4-dequantized-fp32"
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in loaded.model.modules())
    q_bnb = reference.model.layers[0].self_attn.q_proj
    q_ours = loaded.model.model.layers[0].self_attn.q_proj
    expected = dequantize_4bit(q_bnb.weight.data, q_bnb.weight.quant_state).float()
    assert q_ours.weight.dtype == torch.float32 and torch.equal(q_ours.weight, expected)
    # NF4: each block of 64 weights takes at most 16 distinct values.
    assert max(len(block.unique()) for block in q_ours.weight.flatten().split(64)) <= 16
    with pytest.raises(ValueError, match="cpu_kernel"):
        load_base(str(tiny_base), quant="4bit", cpu_kernel="gguf")


def test_picking_filters_degenerate_names_and_extra_tld_variants() -> None:
    text = "paintandpaint.com\npump.com\npump.co\nmathmath.dev\nfresh.io\n"
    raw, _ = rank_domains(text, "paint shop", 5)
    picked, _ = rank_domains(text, "paint shop", 5, reject_degenerate=True, max_tld_variants=1)
    assert {d for d, _ in raw} == {"paintandpaint.com", "pump.com", "pump.co", "mathmath.dev", "fresh.io"}
    assert {d for d, _ in picked} == {"pump.com", "fresh.io"}


def test_pooled_samples_fill_slots_and_do_not_depend_on_the_batch(tiny_base: Path, tiny_adapters: dict[str, Path]) -> None:
    gen = DomainNameGenerator(base_model=str(tiny_base), adapter={k: str(v) for k, v in tiny_adapters.items()}, quant="none",
                              config=GenerationConfig.picking(max_new_tokens=12, batch_size=2), safety=None)
    gen.use("a1")
    together = gen.generate(DESCRIPTIONS)
    alone = [gen.generate([d])[0] for d in DESCRIPTIONS]
    assert [(g.domains, g.pooled) for g in together] == [(g.domains, g.pooled) for g in alone]
    assert all(len(g.pooled) == 4 for g in together if g.pooled) and any(g.pooled for g in together)
    raw = DomainNameGenerator(loaded=gen.loaded, adapter={k: str(v) for k, v in tiny_adapters.items()},
                              config=GenerationConfig(max_new_tokens=12), safety=None)
    raw.use("a1")
    unpicked = raw.generate(DESCRIPTIONS)
    assert not any(g.pooled for g in unpicked)
    assert sum(len(g.domains) for g in together) > sum(len(g.domains) for g in unpicked)
