"""Hooks a conftest.py (or another plugin) can implement to extend domain-eval."""
from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_domain_eval_make_judge(config: pytest.Config, options: Any) -> Any:
    """Return a judge (``score(description, domains) -> JudgeResult``) to use instead of the
    built-in one chosen by ``--judge``. Return None to fall through to the default."""
