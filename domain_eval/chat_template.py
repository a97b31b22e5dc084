"""A base model's chat template, read and rendered without transformers (so without torch).

A remote backend's client builds its prompts here: importing transformers' tokenizer machinery
imports torch (measured: ~7 s and a few hundred MB per xdist worker), which a light client must
not pay. The rendering follows transformers' ``apply_chat_template`` (a sandboxed jinja2
environment with ``trim_blocks``/``lstrip_blocks``, ``raise_exception``, ``tojson`` and the
tokenizer's special tokens as variables); ``tests/test_backends.py`` holds the two equal.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

_SPECIAL = ("bos_token", "eos_token", "unk_token", "pad_token")


class ChatTemplateError(RuntimeError):
    """The base's chat template cannot be found or read; the message names where it looked."""


@dataclass(frozen=True)
class ChatTemplate:
    """A jinja chat template and the special tokens it may refer to."""

    source: str  # where it was read from, for messages
    template: str
    special_tokens: dict[str, str] = field(default_factory=dict)

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return _compiled(self.template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                               tools=None, documents=None, **self.special_tokens)


@functools.lru_cache(maxsize=8)
def _compiled(template: str) -> Any:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def _token_text(value: Any) -> str | None:
    # tokenizer_config.json writes a special token as a string or as {"content": ...}.
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def from_folder(folder: str | Path) -> ChatTemplate:
    """A Hugging Face tokenizer folder: ``chat_template.jinja`` or ``tokenizer_config.json``'s entry."""
    folder = Path(folder)
    config_path = folder / "tokenizer_config.json"
    try:
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
    except (OSError, ValueError) as exc:
        raise ChatTemplateError(f"{config_path}: cannot read it ({exc})") from None
    jinja_path = folder / "chat_template.jinja"
    template = jinja_path.read_text() if jinja_path.exists() else config.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    if not isinstance(template, str) or not template:
        raise ChatTemplateError(f"{folder}: no chat template (neither chat_template.jinja nor tokenizer_config.json's "
                                "chat_template)")
    tokens = {k: t for k in _SPECIAL if (t := _token_text(config.get(k))) is not None}
    return ChatTemplate(str(folder), template, tokens)


def from_gguf(path: str | Path) -> ChatTemplate:
    """The template and special tokens stored in a GGUF file's metadata (numpy only)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    fields = reader.fields

    def value(key: str) -> Any:
        return fields[key].contents() if key in fields else None

    template = value("tokenizer.chat_template")
    if not template:
        raise ChatTemplateError(f"{path}: no tokenizer.chat_template in its metadata")
    tokens_field = fields.get("tokenizer.ggml.tokens")
    tokens: dict[str, str] = {}
    for name, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("unk_token", "unknown_token_id"),
                      ("pad_token", "padding_token_id")):
        token_id = value(f"tokenizer.ggml.{key}")
        if token_id is not None and tokens_field is not None:
            tokens[name] = tokens_field.contents(int(token_id))
    return ChatTemplate(str(path), str(template), tokens)


def for_base(name: str) -> ChatTemplate:
    """The chat template of a base as :func:`domain_eval.models.resolve_base` would load it, read
    without loading the model: the embedded base's converted folder (else its GGUF), a local
    folder, or an HF id's tokenizer files from the Hugging Face cache (or hub, unless offline)."""
    from domain_eval import models

    for emb in models.EMBEDDED.values():
        if name in (emb.alias, emb.hf_id) and (name == emb.alias or models._hf_offline()):
            gguf_path = models._embedded_folder(emb) / emb.gguf_file
            converted = models.cache_dir() / "models" / f"{emb.alias}-{models.file_sha256(str(gguf_path))[:12]}"
            return from_folder(converted) if (converted / "tokenizer_config.json").exists() else from_gguf(gguf_path)
    path = Path(name).expanduser()
    if path.exists():
        return from_folder(path)
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(name, allow_patterns=["tokenizer_config.json", "chat_template.jinja"],
                                   local_files_only=models._hf_offline())
    except Exception as exc:  # noqa: BLE001 - any hub failure means the same thing to the user
        raise ChatTemplateError(f"base {name!r}: its tokenizer files are neither a local folder nor in the Hugging Face "
                                f"cache, and could not be downloaded ({type(exc).__name__}: {exc})") from None
    return from_folder(folder)
