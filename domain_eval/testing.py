"""A tiny random Llama with a locally trained tokenizer, for fast tests and plugin self-tests.

Real architecture, real tokenizer, real peft adapters: only the size is small (seconds on CPU).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = """Suggest 5 domain names for this business: organic coffee shop in downtown Portland
organiccoffee.com beanhub.io brewly.co roastery.net coffeepdx.com
You suggest domain names for businesses. Reply with short, brandable, valid domain names, one per line.
bakery bistro tech startup consulting firm law firm dental clinic yoga studio pet grooming
quantum computing research laboratory kubernetes cost optimisation gardening coaching
.com .io .ai .dev .net .org .co .de .fr .it .es .jp .co.uk www https
""" * 3


@contextmanager
def _isolated_torch(seed: int) -> Iterator[None]:
    """Seeded, single-threaded, and leaving no trace: the tiny models come out the same whatever ran
    before (thread count, RNG draws), and building them neither reseeds torch's global RNG nor
    changes its thread count for the tests that run after."""
    import torch

    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(1)  # tiny matrices: more threads only add contention
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def build_tiny_llama(out_dir: str | Path, seed: int = 0, hidden_size: int = 64, layers: int = 2, pretrain_steps: int = 150) -> Path:
    """Write a random LlamaForCausalLM (+ ChatML BPE tokenizer) to ``out_dir`` and return it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tok.chat_template = CHATML_TEMPLATE
    tok.save_pretrained(out)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=hidden_size * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    with _isolated_torch(seed):
        model = LlamaForCausalLM(config)
        model.generation_config.pad_token_id = tok.pad_token_id
        if pretrain_steps:
            _teach_domains(model, tok, pretrain_steps, lambda w: [f"{w}.com", f"get{w}.io", f"{w}hub.net"])
    model.save_pretrained(out, safe_serialization=True)
    return out


_WORDS = ["coffee", "yoga", "bike", "sushi", "tax", "bakery", "garden", "quantum", "dog", "tea", "law", "bistro"]


def _teach_domains(model, tok, steps: int, answer_for, lr: float = 1e-2, params=None) -> None:
    """A few seconds of training so the tiny model answers prompts with domain lines, as a
    fine-tuned model would: random weights alone almost never emit a valid domain."""
    import torch

    from domain_eval.prompts import build_training_text

    rows = []
    for word in _WORDS:
        prompt, answer = build_training_text(tok, f"{word} business", answer_for(word))
        p_ids = tok(prompt, add_special_tokens=False).input_ids
        a_ids = tok(answer, add_special_tokens=False).input_ids
        rows.append((p_ids + a_ids, [-100] * len(p_ids) + a_ids))
    width = max(len(r[0]) for r in rows)
    ids = torch.tensor([r[0] + [tok.pad_token_id] * (width - len(r[0])) for r in rows])
    labels = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows])
    mask = torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows])
    optim = torch.optim.Adam(params if params is not None else model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
    model.eval()


def build_tiny_adapter(base_dir: str | Path, out_dir: str | Path, seed: int = 1, base_name: str | None = None) -> Path:
    """A real peft LoRA adapter on the tiny base, trained briefly to answer in its own style
    (seed 1: ``WORDly.co`` names, seed 2: ``myWORD.org`` names), so adapters visibly differ."""
    import json

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_dir))
    styles = {1: lambda w: [f"{w}ly.co", f"{w}ify.com"], 2: lambda w: [f"my{w}.org", f"{w}lab.io"]}
    style = styles.get(seed, lambda w: [f"{w}{seed}.com", f"the{w}.net"])
    with _isolated_torch(seed):
        model = AutoModelForCausalLM.from_pretrained(str(base_dir))
        peft_model = get_peft_model(
            model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"], lora_dropout=0.0, task_type="CAUSAL_LM")
        )
        _teach_domains(peft_model, tok, 40, style, lr=1e-2, params=[p for p in peft_model.parameters() if p.requires_grad])
    out = Path(out_dir)
    peft_model.save_pretrained(out)
    (out / "training_meta.json").write_text(json.dumps({"base_model": base_name or str(Path(base_dir).resolve())}))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: list[str], log: Path, timeout: float = 300.0) -> tuple[subprocess.Popen, str]:
    """``domain-eval serve ARGS`` as a process on a free port of 127.0.0.1; returns (process, API root)
    once /health answers (tests and benchmarks use it; ``log`` gets its output)."""
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "domain_eval.cli", "serve", *args, "--port", str(port)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"domain-eval serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url + "/v1"
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"domain-eval serve did not answer within {timeout:g} s:\n{log.read_text()}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
