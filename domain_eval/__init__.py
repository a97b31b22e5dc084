"""domain-eval: fine-tune small LMs to suggest domain names, and evaluate them under pytest.

Heavy modules (torch, transformers, peft) are imported lazily so that importing the
package, or loading the pytest plugin, stays cheap.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["DomainNameGenerator", "GenerationConfig", "__version__"]

if TYPE_CHECKING:
    from domain_eval.generation import DomainNameGenerator, GenerationConfig


def __getattr__(name: str) -> Any:
    if name in ("DomainNameGenerator", "GenerationConfig"):
        from domain_eval import generation

        return getattr(generation, name)
    raise AttributeError(f"module 'domain_eval' has no attribute {name!r}")
