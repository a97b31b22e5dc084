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
                    batch_size=4, learning_rate=3e-2, eval_fraction=0.25, checkpoint_every=2)
    defaults.update(kw)
    return TrainConfig(**defaults)


def test_four_bit_training_loss_falls_and_metadata_is_complete(tiny_base: Path, tiny_data: Path, tmp_path: Path) -> None:
    from training.train import train

    # A no-grad forward first: the exact order that triggers the bitsandbytes repack trap.
    meta = train(_config(tiny_base, tiny_data, tmp_path / "out"), progress=False)
    assert meta["quantization"] == "4bit"
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
