"""What one generation run learns of its endpoints and keeps until it ends: the models that take no temperature.

OpenAI's o1, o3 and gpt-5 answer `temperature: 0` with HTTP 400; `ask` then asks again without one. Asking every
later question of the run with a temperature would cost each a refused request, so the refusal is remembered per
endpoint and model, for the run only (`one_run`): a later run asks with one again, as a model may come to take it.
A warning true of every question of a run (the answer cache cannot be written) is given once in it (`first_in_run`).
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar

from vipcli.symptoms.llm import LLMConfig

_REFUSED: ContextVar[set | None] = ContextVar("vip_temperature_refused", default=None)
_SAID: ContextVar[set | None] = ContextVar("vip_said_once", default=None)  # warnings given once a run


@contextlib.contextmanager
def one_run():
    """The block is one run: a temperature refusal remembered in it (`remember_refusal`) holds to its end.

    Nested in another run (`vip symptoms generate` over several classes, each `generate_pack` a run of its own
    when called alone), it is part of the outer one."""
    if _REFUSED.get() is not None:
        yield
        return
    token, said = _REFUSED.set(set()), _SAID.set(set())
    try:
        yield
    finally:
        _REFUSED.reset(token)
        _SAID.reset(said)


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


def first_in_run(note: str) -> bool:
    """Whether `note` (a warning's kind, e.g. "cache not written") is met for the first time in this run, marking
    it met: a warning true of every question of a run is given once. Always True outside a run."""
    said = _SAID.get()
    if said is None:
        return True
    if note in said:
        return False
    said.add(note)
    return True
