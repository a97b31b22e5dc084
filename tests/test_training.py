"""Training pipeline on the tiny Llama: 4-bit loss falls (AVX512-BF16 trap handled), answer-only
labels, dynamic padding, metadata, and resuming."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.datasets import Row, write_dataset

ROWS = [
    Row(f"{kind} in {city}", (f"{kind.split()[0]}{city.lower()}.com", f"get{kind.split()[0]}.io", f"{city.lower()}{kind.split()[-1]}.net"))
    for kind in ("coffee shop", "yoga studio", "bike repair", "dog grooming")
    for city in ("Paris", "Oslo", "Lima", "Rome")
]


@pytest.fixture()
def tiny_data(tmp_path: Path) -> Path:
    return write_dataset(ROWS, tmp_path / "tiny.jsonl")


def _config(tiny_base: Path, data: Path, out: Path, **kw):
    from training.train import TrainConfig

    defaults = dict(data=str(data), output=str(out), base_model=str(tiny_base), quant="4bit", epochs=6,
                    batch_size=4, learning_rate=3e-2, eval_fraction=0.25, checkpoint_every=2, cpu_kernel="bnb")
    defaults.update(kw)
    return TrainConfig(**defaults)


def test_four_bit_training_loss_falls_and_metadata_is_complete(tiny_base: Path, tiny_data: Path, tmp_path: Path) -> None:
    from training.train import train

    # A no-grad forward first: the exact order that triggers the bitsandbytes repack trap.
    meta = train(_config(tiny_base, tiny_data, tmp_path / "out"), progress=False)
    assert meta["quantization"] == "4bit" and meta["kernel"] == "bnb-4bit"
    # With the trap unhandled the loss here is flat to 5 decimals (6.2095 -> 6.2100); handled, it falls ~0.19.
    assert meta["final_train_loss"] < meta["first_train_loss"] - 0.1, meta["loss_curve"]
    assert meta["final_eval_loss"] < meta["initial_eval_loss"]
    saved = json.loads((tmp_path / "out" / "training_meta.json").read_text())
    for key in ("base_model", "dataset", "config", "loss_curve", "tokens_per_second_real", "versions", "wall_seconds"):
        assert key in saved
    assert saved["dataset"]["rows"] == len(ROWS) and len(saved["dataset"]["sha256"]) == 64
    assert saved["config"]["rank"] == 16 and saved["config"]["target_modules"] == ["q_proj", "v_proj"]
    assert 0 <= saved["padding_fraction"] < 0.5  # dynamic padding, not 512-token rows
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()


def test_dequantized_training_freezes_the_nf4_weights_and_learns(tiny_base: Path, tiny_data: Path, tmp_path: Path) -> None:
    """The default CPU path: the frozen base is the 4-bit model's NF4 values as fp32 layers."""
    import torch
    from bitsandbytes.functional import dequantize_4bit

    from domain_eval.models import load_base
    from training.train import train

    meta = train(_config(tiny_base, tiny_data, tmp_path / "out", cpu_kernel="dequantized", save_dtype="float16"),
                 progress=False)
    assert meta["quantization"] == "4bit" and meta["kernel"] == "nf4-dequantized-fp32"
    assert meta["final_train_loss"] < meta["first_train_loss"] - 0.1, meta["loss_curve"]
    # What it trains over is exactly the NF4 model's weights, not the fp32 checkpoint's.
    four_bit = load_base(str(tiny_base), quant="4bit", cpu_kernel="bnb").model
    frozen = load_base(str(tiny_base), quant="4bit", for_training=True, cpu_kernel="dequantized").model
    q4 = four_bit.model.layers[0].self_attn.q_proj.weight
    expected = dequantize_4bit(q4.data, q4.quant_state).to(torch.float32)
    assert torch.equal(frozen.model.layers[0].self_attn.q_proj.weight, expected)
    full = load_base(str(tiny_base), quant="none").model
    assert not torch.equal(full.model.layers[0].self_attn.q_proj.weight, expected)
    # Saved in float16, and still an adapter the generator loads.
    import safetensors.torch

    from domain_eval.generation import DomainNameGenerator

    saved = safetensors.torch.load_file(str(tmp_path / "out" / "adapter_model.safetensors"))
    assert {v.dtype for v in saved.values()} == {torch.float16}
    gen = DomainNameGenerator(base_model=str(tiny_base), adapter=str(tmp_path / "out"), safety=None)
    assert gen.generate(["coffee shop in Paris"])[0].raw is not None


def test_length_grouped_batches_cover_every_row_once_with_less_padding() -> None:
    import random

    from training.train import Example, _batches

    examples = [Example(list(range(n)), list(range(n))) for n in random.Random(1).choices(range(5, 120), k=300)]
    plain = _batches(examples, 8, random.Random(0))
    grouped = _batches(examples, 8, random.Random(0), group_by_length=True)
    assert sorted(id(e) for b in grouped for e in b) == sorted(id(e) for e in examples)

    def padded(batches):
        return sum(len(b) * max(len(e.input_ids) for e in b) for b in batches)

    assert padded(grouped) < 0.8 * padded(plain)
    # Not ordered short to long: the batches of a window are shuffled.
    widths = [max(len(e.input_ids) for e in b) for b in grouped]
    assert widths != sorted(widths)


def test_labels_mask_prompt_and_padding_but_keep_eos(tiny_base: Path) -> None:
    from transformers import AutoTokenizer

    from training.train import collate, encode_rows

    tok = AutoTokenizer.from_pretrained(str(tiny_base))
    ex = encode_rows(tok, ROWS[:2], 192)
    batch = collate(ex, tok.pad_token_id)
    for i, e in enumerate(ex):
        answer = [t for t in batch["labels"][i].tolist() if t != -100]
        assert answer[-1] == tok.eos_token_id  # the pad id equals eos: still learned
        assert tok.decode(answer, skip_special_tokens=True).splitlines() == list(ROWS[i].domains)
        assert batch["attention_mask"][i].sum() == len(e.input_ids)
    assert batch["input_ids"].shape[1] == max(len(e.input_ids) for e in ex)


def test_resume_continues_from_checkpoint(tiny_base: Path, tiny_data: Path, tmp_path: Path) -> None:
    from training.train import train

    out = tmp_path / "r"
    train(_config(tiny_base, tiny_data, out, epochs=1), progress=False)
    state = json.loads((out / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert state["step"] == 2
    meta = train(_config(tiny_base, tiny_data, out, epochs=2), resume=True, progress=False)
    assert meta["steps"] == 6
    assert [c["step"] for c in meta["loss_curve"]] == list(range(1, 7))


def test_invalid_config_is_rejected(tiny_base: Path, tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rank"):
        _config(tiny_base, tiny_data, tmp_path, rank=0)
    with pytest.raises(ValueError, match="quant"):
        _config(tiny_base, tiny_data, tmp_path, quant="8bit")
    with pytest.raises(ValueError, match="cpu_kernel"):
        _config(tiny_base, tiny_data, tmp_path, cpu_kernel="gguf")


def test_reproduce_command_round_trips_through_the_cli(tmp_path: Path) -> None:
    import argparse
    import shlex
    from dataclasses import asdict

    from training.cli import _add_arguments
    from training.train import TrainConfig, reproduce_command

    config = TrainConfig(data="d.jsonl", output="models/x", target_modules=["all-linear"], epochs=1, learning_rate=5e-4,
                         weight_decay=0.01, cpu_kernel="bnb",
                         group_by_length=True, save_dtype="float16", base_model="TinyLlama/TinyLlama-1.1B-Chat-v1.0")
    parser = argparse.ArgumentParser()
    _add_arguments(parser)
    args = vars(parser.parse_args(shlex.split(reproduce_command(asdict(config)))[2:]))
    args["target_modules"] = args["target_modules"].split(",")
    assert {k: v for k, v in args.items() if k in asdict(config)} == asdict(config)
    # v1-v3's metadata predate --cpu-kernel: they were trained through bitsandbytes' Linear4bit.
    shipped = json.loads((Path(__file__).resolve().parent.parent / "models" / "v3" / "training_meta.json").read_text())
    assert "--cpu-kernel bnb" in reproduce_command(shipped["config"])


def test_model_card_loss_line_shows_the_trend_of_a_single_epoch() -> None:
    from training.train import _loss_summary

    curve = [{"step": i + 1, "epoch": 0, "loss": 4.0 - 0.1 * i} for i in range(20)]
    line = _loss_summary({"loss_curve": curve, "initial_eval_loss": 4.4970487, "final_eval_loss": 2.8398904})
    assert line == "train 3.950 (mean of the first 2 steps) -> 2.150 (last 2); eval 4.497 -> 2.840"
    assert _loss_summary({"loss_curve": [], "initial_eval_loss": None, "final_eval_loss": None}) == "not recorded"
