"""What one generation run learns of its endpoints and keeps until it ends: the models that take no temperature.

OpenAI's o1, o3 and gpt-5 answer `temperature: 0` with HTTP 400; `ask` then asks again without one. Asking every
later question of the run with a temperature would cost each a refused request, so the refusal is remembered per
endpoint and model, for the run only (`one_run`): a later run asks with one again, as a model may come to take it.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar

from vipcli.symptoms.llm import LLMConfig

_REFUSED: ContextVar[set | None] = ContextVar("vip_temperature_refused", default=None)


@contextlib.contextmanager
def one_run():
    """The block is one run: a temperature refusal remembered in it (`remember_refusal`) holds to its end.

    Nested in another run (`vip symptoms generate` over several classes, each `generate_pack` a run of its own
    when called alone), it is part of the outer one."""
    if _REFUSED.get() is not None:
        yield
        return
    token = _REFUSED.set(set())
    try:
        yield
    finally:
        _REFUSED.reset(token)


def _endpoint(llm: LLMConfig) -> tuple[str, str]:
    return llm.base_url.rstrip("/"), llm.model


def remember_refusal(llm: LLMConfig) -> None:
    """Note that `llm.model` at `llm.base_url` refused a temperature (nothing outside a run)."""
    refused = _REFUSED.get()
    if refused is not None:
        refused.add(_endpoint(llm))


def refused_temperature(llm: LLMConfig) -> bool:
    """Whether `llm.model` at `llm.base_url` has refused a temperature earlier in this run."""
    refused = _REFUSED.get()
    return refused is not None and _endpoint(llm) in refused
