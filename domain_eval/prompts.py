"""The one prompt builder shared by training and inference.

The original project trained on one prompt and evaluated on another; every path
that talks to a model (training rows, generation, benchmarks) goes through here so
that cannot happen again.
"""
from __future__ import annotations

from typing import Any, Sequence

SYSTEM_PROMPT = (
    "You suggest domain names for businesses. Reply with short, brandable, valid domain "
    "names, one per line, and nothing else."
)
PROMPT_VERSION = "v1"
USER_PREFIX = "Suggest {n} domain names for this business: "


def build_messages(description: str, n: int = 5) -> list[dict[str, str]]:
    """Chat messages asking for ``n`` domains for ``description``."""
    description = " ".join(description.split())
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": USER_PREFIX.format(n=n) + description},
    ]


def format_answer(domains: Sequence[str]) -> str:
    """The assistant's answer as the model should learn to write it."""
    return "\n".join(domains)


def build_prompt(tokenizer: Any, description: str, n: int = 5) -> str:
    """The text fed to the model at inference, ending where the answer begins."""
    return tokenizer.apply_chat_template(
        build_messages(description, n), tokenize=False, add_generation_prompt=True
    )


def build_training_text(tokenizer: Any, description: str, domains: Sequence[str]) -> tuple[str, str]:
    """(prompt, answer) for a training row.

    The prompt is byte-identical to :func:`build_prompt` with ``n=len(domains)``;
    the answer ends with the tokenizer's end-of-turn token so the model learns to stop.
    """
    prompt = build_prompt(tokenizer, description, n=len(domains))
    eos = tokenizer.eos_token or ""
    return prompt, format_answer(domains) + eos


def render_prompt(template: Any, description: str, n: int = 5) -> str:
    """:func:`build_prompt` without a tokenizer (so without torch): the same messages rendered by
    the base's own chat template (a :class:`domain_eval.chat_template.ChatTemplate`). Remote
    backends send this text to ``/v1/completions``; a test holds it equal to :func:`build_prompt`."""
    return template.render(build_messages(description, n), add_generation_prompt=True)
