"""The CUDA 4-bit path, on the tiny random Llama: the original's QLoRA quantisation (NF4, double
quantisation, bf16 compute) as bitsandbytes loads it on a GPU, training through it, and the
adapter generating there. Skipped without a CUDA GPU (a hardware requirement, said in the skip
reason); the GPU workflow's `make test` runs it."""
from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the 4-bit path that GPU CI runs)")

DESCRIPTIONS = ["organic coffee shop in Portland", "yoga studio for beginners", "bike repair in Oslo"]


def test_the_base_loads_as_nf4_with_double_quantisation_and_bf16_compute(tiny_base: Path) -> None:
    import bitsandbytes as bnb

    from domain_eval.models import load_base

    loaded = load_base(str(tiny_base), quant="4bit", device="cuda")
    assert (loaded.quant, loaded.kernel, loaded.device) == ("4bit", "bnb-4bit", "cuda")
    layers = [m for m in loaded.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers, "no Linear4bit layer: the model did not load in 4-bit"
    for layer in layers:
        state = layer.weight.quant_state
        assert state.quant_type == "nf4" and state.nested, "NF4 with double quantisation (nested absmax)"
        assert layer.compute_dtype == torch.bfloat16 and layer.weight.device.type == "cuda"


def test_qlora_training_on_the_gpu_learns_and_its_adapter_generates(tiny_base: Path, tmp_path: Path) -> None:
    from domain_eval.generation import DomainNameGenerator, GenerationConfig
    from training.datasets import Row, write_dataset
    from training.train import TrainConfig, train

    rows = [Row(f"{kind} in {city}", (f"{kind.split()[0]}{city.lower()}.com", f"get{kind.split()[0]}.io"))
            for kind in ("coffee shop", "yoga studio", "bike repair", "dog grooming")
            for city in ("Paris", "Oslo", "Lima", "Rome")]
    data = write_dataset(rows, tmp_path / "tiny.jsonl")
    config = TrainConfig(data=str(data), output=str(tmp_path / "out"), base_model=str(tiny_base), quant="4bit",
                         epochs=6, batch_size=4, learning_rate=3e-2, eval_fraction=0.25, checkpoint_every=0,
                         device="cuda")
    meta = train(config, progress=False)
    assert meta["device"] == "cuda" and meta["quantization"] == "4bit" and meta["kernel"] == "bnb-4bit"
    assert meta["final_train_loss"] < meta["first_train_loss"] - 0.1, meta["loss_curve"]
    assert meta["final_eval_loss"] < meta["initial_eval_loss"]

    gen = DomainNameGenerator(base_model=str(tiny_base), adapter=str(tmp_path / "out"), quant="4bit", device="cuda",
                              config=GenerationConfig(max_new_tokens=16), safety=None)
    assert gen.loaded.kernel == "bnb-4bit"
    first = [g.raw for g in gen.generate(DESCRIPTIONS)]
    assert first == [g.raw for g in gen.generate(DESCRIPTIONS)], "greedy decoding on the GPU is deterministic"
    gen.use("base")
    assert [g.raw for g in gen.generate(DESCRIPTIONS)] != first, "the trained adapter changes what the GPU decodes"

    # Picking's samples draw from one CUDA generator per row, and the same seeds give the same samples.
    # (Alone-or-batched equality is not asserted here: bf16 kernels may round differently by batch size.)
    picking = DomainNameGenerator(loaded=gen.loaded, adapter=str(tmp_path / "out"),
                                  config=GenerationConfig.picking(max_new_tokens=16), safety=None)
    prompts = [gen.tokenizer(d).input_ids for d in DESCRIPTIONS]
    sampled = picking._sample_texts([0, 2], prompts, DESCRIPTIONS, 7, 5)
    assert sorted(sampled) == [0, 2] and all(len(texts) == 4 for texts, _ in sampled.values())
    assert sampled == picking._sample_texts([0, 2], prompts, DESCRIPTIONS, 7, 5)
