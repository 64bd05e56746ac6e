"""A small chat-completions client for any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp).

The API key is read from an environment variable and only ever put in the Authorization header:
never in messages, cache files, packs or error text. A base URL may carry credentials too (a user name
and password, sent by httpx as a Basic header, or a key in a query value); the URL is only ever shown
with them masked (mask_url). Whatever a server sends back, the key, the URL's credentials and every
fragment of them of REDACT_MIN or more characters, in any letter case and in base64, are masked
before the text is cut, shown, cached or written. `timeout_s` is a deadline for a whole request
(connecting, sending, waiting and reading the answer), and answers larger than MAX_ANSWER_BYTES are
refused.
"""

from __future__ import annotations

import base64
import os
import re
import string
import time
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

from vipcli import shell
from vipcli.errors import UsageError, VipError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
MAX_ANSWER_BYTES = 1_000_000  # a symptom list is a few kB; anything past 1 MB is refused
REDACT_MIN = 6  # key fragments this long or longer are masked in anything shown or written
MASK = "[redacted]"  # no markdown characters: the answer's clean-up must not eat it
STOPPED_AT_LIMIT = "length"  # chat's stop reason: the server's output-token limit cut the answer
FILTERED = "content_filter"  # chat's stop reason: the provider's content filter took the answer out
# the finish reasons of a content filter, as OpenAI-compatible servers and gateways pass them on
FILTER_REASONS = frozenset({"content_filter", "refusal", "safety", "prohibited_content", "blocklist", "spii",
                            "recitation", "image_safety"})


class AnswerTooLarge(Exception):
    """The server sent (or announced) more than MAX_ANSWER_BYTES."""

    def __init__(self, size: int):
        super().__init__(size)
        self.size = size


class LLMError(VipError):
    """The endpoint itself failed (unreachable, refused the key, rate-limited, broken answer)."""


class TemperatureRefused(LLMError):
    """The model takes no temperature but its own default (OpenAI's o1, o3 and gpt-5 families answer HTTP 400,
    `param: temperature`); asking again without one works."""


@dataclass(frozen=True)
class LLMConfig:
    """Where and how to ask the LLM."""

    base_url: str = DEFAULT_BASE_URL  # OpenAI-compatible root, e.g. http://localhost:8000/v1
    model: str = DEFAULT_MODEL  # model name as the server knows it
    api_key_env: str = DEFAULT_KEY_ENV  # environment variable holding the key ("" or unset: no key)
    key_over_http: bool = False  # the user named api_key_env: send its key even over plain http to another host
    timeout_s: float = 120.0  # deadline of one request: connect, send, wait and read the whole answer
    retries: int = 4  # extra tries after a 429, 5xx or timeout
    backoff_s: float = 1.0  # first wait before a retry; doubled each time
    max_wait_s: float = 60.0  # longest single wait, also caps Retry-After
    temperature: float | None = 0.0  # sampling temperature sent with every request; None: none sent (the model's own)


def endpoint_host(base_url: str) -> str:
    """The host (and port, if any) of `base_url`: no scheme, credentials, path or query.

    Args:
        base_url: the endpoint root URL.

    Returns:
        e.g. "api.openai.com" or "localhost:11434"; `base_url` with its credentials masked (mask_url)
        when it names no host.
    """
    parts = _split(base_url)
    if parts is None or not parts.hostname:
        return mask_url(base_url)
    return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname


def check_base_url(base_url: str) -> str:
    """Return `base_url` without a trailing slash, or raise UsageError if it is not http(s).

    The error shows the URL with its credentials and query values masked (mask_url).
    """
    from vipcli.console import printable

    parts = _split(base_url)
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"--base-url {printable(mask_url(base_url))!r} is not an http(s) URL",
            "e.g. https://api.openai.com/v1 or http://localhost:11434/v1",
        )
    refusal = _httpx_refusal(base_url)
    if refusal:
        raise UsageError(
            f"--base-url {printable(mask_url(base_url))!r} cannot be sent: {printable(refusal)}",
            "check the host name, and leave out control characters",
        )
    return base_url.rstrip("/")


def _httpx_refusal(base_url: str) -> str | None:
    """Why httpx would refuse the chat-completions URL under `base_url` (secrets redacted), or None."""
    import httpx

    try:
        httpx.URL(chat_url(base_url))
    except httpx.InvalidURL as error:
        return redact(str(error).rstrip("."), url_secrets(base_url))
    return None


def chat_url(base_url: str) -> str:
    """The chat-completions URL under `base_url`: its path + /chat/completions, query kept after it."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/chat/completions", fragment=""))


def mask_url(url: str) -> str:
    """`url` fit to show: its user name and password (what stands between "//" and the last "@" of the
    host part) and the values of its secret query fields (`secret_field`) replaced by MASK, whether or
    not the rest parses as a URL. The host, the path and other query values (`api-version`) stay.
    When no host can be read (a password holding an unencoded "/", "?" or "#", a slash missing after
    the scheme), everything between the scheme and the URL's last "@" is masked.

    Args:
        url: a URL as the user typed it, e.g. "htp://user:KEY@host/v1?api-key=KEY&api-version=2024-02-01".

    Returns:
        e.g. "htp://[redacted]@host/v1?api-key=[redacted]&api-version=2024-02-01".
    """
    head, slashes, rest = url.partition("//")
    if not slashes:
        head, rest = "", url
    if "@" in url and not _readable_host(url):  # a password holding "/", "?" or "#", or a slash missing
        head, slashes, rest = _scheme_head(url), "", MASK + url[url.rindex("@"):]
    cut = min((rest.find(mark) for mark in "/?#" if mark in rest), default=len(rest))
    authority, rest = rest[:cut], rest[cut:]
    if "@" in authority:
        authority = MASK + "@" + authority.rpartition("@")[2]
    path, question, query = rest.partition("?")
    if question:
        fields = (field.partition("=") for field in query.split("&"))
        query = "&".join(f"{name}={MASK if secret_field(name) else value}" if equals else (MASK if name else "")
                         for name, equals, value in fields)
    return head + slashes + authority + path + question + query


def _readable_host(url: str) -> bool:
    """Whether `url` parses with a host name (then its credentials end at the first "/", "?" or "#")."""
    parts = _split(url)
    return parts is not None and bool(parts.hostname)


def _scheme_head(url: str) -> str:
    """The scheme and the slashes after it as typed ("http:/", "https://"), or "" when no slash follows
    (then the "user:" of "user:password@host" would pass for a scheme)."""
    match = re.match(r"(?:[A-Za-z][A-Za-z0-9+.\-]*:)?[/\\]+", url)
    return match.group(0) if match else ""


SECRET_FIELDS = re.compile(r"key|token|secret|sig|pass|pwd|auth|cred|session|code", re.IGNORECASE)


def secret_field(name: str) -> bool:
    """Whether a query field of --base-url carries a secret by its name (`api-key`, `token`, `sig`,
    `code`, ...); `api-version`, `model` or `deployment` do not."""
    return bool(SECRET_FIELDS.search(unquote_plus(name)))


def url_secrets(base_url: str) -> list[str]:
    """The secrets `base_url` can carry, for redact(): its user name, password and the values of its
    secret query fields (`secret_field`; a field without "=" whole), each as written and percent-decoded.

    A Basic header (base64 of "user:password") is covered by the password's base64 forms. Those shorter
    than REDACT_MIN are left out: too short to be a secret, and masking them would eat ordinary words
    and list numbers. Other query values (`api-version=2024-02-15-preview`) are not secrets: masking
    them would eat words and dates of the answers.
    """
    parts = _split(base_url)
    if parts is None:
        return []
    found = [parts.username or "", parts.password or ""]
    for field in parts.query.split("&") if parts.query else []:
        name, equals, value = field.partition("=")
        if not equals:
            found.append(name)
        elif secret_field(name):
            found.append(value)
    forms = [form for text in found for form in (text, unquote(text), unquote_plus(text))]
    return list(dict.fromkeys(form for form in forms if len(form) >= REDACT_MIN))


SECRET_VARIABLE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)


def environment_secrets() -> list[str]:
    """The values of the environment variables named like secrets (OPENAI_API_KEY, MY_LLM_KEY, ..._TOKEN,
    ..._SECRET, ..._PASSWORD) and the proxy variables' user names and passwords, for redact(): what a
    VIP_DEBUG=1 traceback must not show, whatever command it came from (a variable --api-key-env names
    otherwise is masked by the symptoms commands' own errors, which know it)."""
    found = [value.strip() for name, value in os.environ.items() if SECRET_VARIABLE.search(name)]
    return [value for value in found if len(value) >= REDACT_MIN] + proxy_secrets()


def secrets_of(config: LLMConfig) -> list[str]:
    """Everything redact() must mask for `config`: the key in its variable, the secrets of its base URL and
    the user names and passwords of the proxy variables (a proxy, or a server behind one that passes the
    Proxy-Authorization header on, may echo it); never raises."""
    key = current_key(config)
    return ([key] if key else []) + url_secrets(config.base_url) + proxy_secrets()


def _has_credentials(base_url: str) -> bool:
    """True when `base_url` holds a user name or a password (httpx sends them as a Basic header)."""
    parts = _split(base_url)
    return parts is not None and bool(parts.username or parts.password is not None)


def _query_secrets(base_url: str) -> bool:
    """True when the query of `base_url` holds a field named like a secret (`secret_field`: `api-key=...`)."""
    parts = _split(base_url)
    return parts is not None and any(secret_field(field.partition("=")[0])
                                     for field in parts.query.split("&") if "=" in field)


def _split(url: str):
    """urlsplit(url), or None when it cannot be read (a bracket left open, a port that is not a number
    in 0-65535)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsed on access: raises ValueError for a bad port
    except ValueError:
        return None
    return parts


KEY_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what --api-key-env may hold: a variable name
TOKEN_PREFIXES = ("sk_", "hf_", "gsk_", "ghp_", "github_pat_")  # tokens that are also valid variable names


def check_key_env(name: str) -> str:
    """Return `name` if it is the name of an environment variable ("" means no key); UsageError otherwise.

    A key pasted where the name belongs is the usual slip, so the error never repeats the value.
    """
    if name == "" or (KEY_ENV_NAME.fullmatch(name) and not _looks_like_token(name)):
        return name
    raise UsageError(
        "--api-key-env takes the name of an environment variable (such as OPENAI_API_KEY), not the key itself",
        f"{shell.set_variable('OPENAI_API_KEY', '<your key>')} and leave --api-key-env out, or "
        f"{shell.set_variable('MY_VAR', '<your key>')} and give --api-key-env MY_VAR",
    )


def _looks_like_token(name: str) -> bool:
    """True for a valid variable name that is more likely a pasted token: a known token prefix, or 20+
    characters with digits and either no underscore (hex, base64) or both letter cases (random)."""
    if name.startswith(TOKEN_PREFIXES):
        return True
    mixed_case = any(c.islower() for c in name) and any(c.isupper() for c in name)
    return len(name) >= 20 and any(c.isdigit() for c in name) and ("_" not in name or mixed_case)


ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def redact(text: str, secrets: str | Iterable[str | None] | None) -> str:
    """`text` with every secret in `secrets` masked: every fragment of it of REDACT_MIN or more characters,
    in any letter case, and the same for its base64 forms (as a server may echo a key inside a Basic
    header), each replaced by MASK ("[redacted]"). A secret shorter than REDACT_MIN is masked whole.

    Run it on the whole text before cutting it short, so no cut can leave a fragment behind.

    Args:
        text: what a server sent back.
        secrets: one secret (the API key) or several (secrets_of: the key and the base URL's secrets).
    """
    secrets = [secrets] if secrets is None or isinstance(secrets, str) else list(secrets)
    secrets = [secret for secret in secrets if secret]
    if not secrets or not text:
        return text
    for short in (secret for secret in secrets if len(secret) < REDACT_MIN):
        text = re.sub(re.escape(short), MASK, text, flags=re.IGNORECASE)
    grams = set()
    for secret in (secret for secret in secrets if len(secret) >= REDACT_MIN):
        for form in (secret, *_base64_forms(secret)):
            grams |= _fragments(form)
    return _mask_fragments(text, grams)


def _base64_forms(secret: str) -> list[str]:
    """The parts of `secret`'s base64 encodings (standard and URL-safe) that are the same wherever it
    sits in the encoded bytes: one per alignment to the 3-byte groups, ends cut where they depend on
    the neighbouring bytes."""
    raw, forms = secret.encode("utf-8"), []
    for offset in range(3):  # the secret after `offset` other bytes: its characters are those made of its bits only
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii")
        middle = encoded[(8 * offset + 5) // 6:(8 * (offset + len(raw))) // 6]
        for form in (middle, middle.replace("+", "-").replace("/", "_")):
            if len(form) >= REDACT_MIN and form not in forms:
                forms.append(form)
    return forms


PUBLIC_PREFIXES = ("sk-ant-api03-", "sk-or-v1-", "sk-proj-", "sk-svcacct-", "sk-ant-", "sk-")  # the same in every key


def _fragments(secret: str) -> set[str]:
    """The REDACT_MIN-character fragments of `secret`, lower-cased.

    Fragments wholly inside a key's public prefix ("sk-proj-") are not secret and would mask ordinary
    words ("task-progress"); those overlapping the secret part are kept.
    """
    public = next((len(prefix) for prefix in PUBLIC_PREFIXES if secret.startswith(prefix)), 0)
    start = max(0, public - REDACT_MIN + 1)  # the first fragment that reaches past the public prefix
    return {secret[i : i + REDACT_MIN].translate(ASCII_LOWER) for i in range(start, len(secret) - REDACT_MIN + 1)}


def _mask_fragments(text: str, grams: set[str]) -> str:
    """`text` with every run made of REDACT_MIN-character fragments in `grams` (any case) replaced by MASK."""
    lowered = text.translate(ASCII_LOWER)  # same length as `text` (str.lower can lengthen a character)
    covered, end = [], -1  # merged [start, stop) spans of text made of key fragments
    for i in range(len(text) - REDACT_MIN + 1):
        if lowered[i : i + REDACT_MIN] in grams:
            if i <= end and covered:
                covered[-1][1] = i + REDACT_MIN
            else:
                covered.append([i, i + REDACT_MIN])
            end = i + REDACT_MIN
    if not covered:
        return text
    pieces, last = [], 0
    for start, stop in covered:
        pieces += [text[last:start], MASK]
        last = stop
    return "".join(pieces) + text[last:]


def current_key(config: LLMConfig) -> str | None:
    """The key in `config.api_key_env` if set (never raises; for redacting text)."""
    return os.environ.get(config.api_key_env, "").strip() or None if config.api_key_env else None


def read_api_key(config: LLMConfig) -> str | None:
    """The key from `config.api_key_env`, or None when unset (local servers need none).

    Raises:
        LLMError: the default OpenAI endpoint is used without a key (an endpoint failure: no question to it can be
            asked, so generating several packs stops at the first instead of failing once per pack).
        UsageError: a key variable the user named holds nothing (`check_named_key_is_set`).
    """
    key = os.environ.get(config.api_key_env, "").strip() if config.api_key_env else ""
    if key:
        return check_key_text(key, config.api_key_env)
    check_named_key_is_set(config)
    if endpoint_host(config.base_url) == "api.openai.com":
        raise LLMError(
            f"no API key for api.openai.com: ${config.api_key_env or DEFAULT_KEY_ENV} is not set",
            f"{shell.set_variable(config.api_key_env or DEFAULT_KEY_ENV, '...')} or point --base-url at a local "
            "server",
        )
    return None


def key_variable_was_named(config: LLMConfig) -> bool:
    """Whether the user chose `config.api_key_env` (`--api-key-env NAME`, or another variable than the default in
    the Python interface), rather than vip reading `$OPENAI_API_KEY` by default."""
    return bool(config.api_key_env) and (config.key_over_http or config.api_key_env != DEFAULT_KEY_ENV)


def check_named_key_is_set(config: LLMConfig) -> None:
    """Refuse a key variable the user named that is unset or empty, before any request.

    Without a key vip sends no Authorization header, which a local server may want; but a variable the user
    named is meant to hold one, so its absence is a typo or a forgotten `export`, and the server would answer
    with a 401 (or, worse, serve an unauthenticated default). `--api-key-env ''` says "no key".

    Raises:
        UsageError: the variable was named and holds nothing.
    """
    if not key_variable_was_named(config) or current_key(config) is not None:
        return
    name = config.api_key_env
    raise UsageError(
        f"--api-key-env {name}: ${name} is not set (or is empty), so there is no key to send",
        f"{shell.set_variable(name, '...')}, or pass --api-key-env '' if the server needs no key",
    )


def is_loopback(host: str | None) -> bool:
    """Whether `host` (a URL's hostname) is this machine: localhost, *.localhost, a loopback address, or
    0.0.0.0 / :: (which local servers print as their address, e.g. vLLM's `http://0.0.0.0:8000`; a
    connection to it stays on this machine)."""
    import ipaddress

    if not host:
        return False
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def check_key_transport(config: LLMConfig) -> None:
    """Refuse to send a key over plain http to another machine unless its variable was named explicitly.

    `$OPENAI_API_KEY` is read by default, so `--base-url http://10.0.0.5:8000/v1` would put the user's
    OpenAI key on the network unencrypted, to a server that may not need it. Loopback hosts and https
    are fine; naming the variable (`--api-key-env OPENAI_API_KEY`) says it is meant to go there.

    Raises:
        UsageError: a key is set, the URL is http, its host is not this machine, and the variable is the default.
    """
    parts = _split(config.base_url)
    if (config.key_over_http or current_key(config) is None or parts is None or parts.scheme != "http"
            or is_loopback(parts.hostname)):
        return
    host = endpoint_host(config.base_url)
    raise UsageError(
        f"--base-url http://{host} is plain http to another machine: ${config.api_key_env} would cross the "
        "network unencrypted",
        f"use https, pass --api-key-env '' if the server needs no key, or --api-key-env {config.api_key_env} "
        "to send it anyway",
    )


# hosts of providers whose keys are not OpenAI's: the variable their own tools read
PROVIDER_KEYS = {
    "api.anthropic.com": ("Anthropic", "ANTHROPIC_API_KEY"),
    "openrouter.ai": ("OpenRouter", "OPENROUTER_API_KEY"),
    "generativelanguage.googleapis.com": ("Google Gemini", "GEMINI_API_KEY"),
    "api.groq.com": ("Groq", "GROQ_API_KEY"),
    "api.mistral.ai": ("Mistral", "MISTRAL_API_KEY"),
    "api.together.xyz": ("Together AI", "TOGETHER_API_KEY"),
    "api.deepseek.com": ("DeepSeek", "DEEPSEEK_API_KEY"),
    "api.x.ai": ("xAI", "XAI_API_KEY"),
    "api.fireworks.ai": ("Fireworks AI", "FIREWORKS_API_KEY"),
}


def provider_of(base_url: str) -> tuple[str, str] | None:
    """(provider, the variable its key is kept in) when `base_url` is a known provider other than OpenAI
    (`PROVIDER_KEYS`, its host or a subdomain of it); None otherwise."""
    parts = _split(base_url)
    host = (parts.hostname or "").lower().rstrip(".") if parts is not None else ""
    return next((found for name, found in PROVIDER_KEYS.items() if host == name or host.endswith("." + name)), None)


def check_key_provider(config: LLMConfig) -> None:
    """Refuse, before any request, to send `$OPENAI_API_KEY` (read by default) to another provider's endpoint.

    `--base-url https://api.anthropic.com/v1` without `--api-key-env` would send the user's OpenAI key to
    Anthropic, which cannot use it, and answer 401 only after it has it; without a key it would answer 401
    asking for one in the wrong variable. Either way the provider's own variable is named.

    Raises:
        UsageError: the key variable was not named and --base-url is a known provider other than OpenAI.
    """
    provider = provider_of(config.base_url)
    if provider is None or key_variable_was_named(config):
        return
    name, variable = provider
    host = endpoint_host(config.base_url)
    fix = f"{shell.set_variable(variable, '...')} and pass --api-key-env {variable}"
    if current_key(config) is not None:
        raise UsageError(f"--base-url {host} is {name}'s: ${config.api_key_env}, which vip reads by default, would "
                         "be sent to it, and it is meant for OpenAI",
                         f"{fix}, or --api-key-env {config.api_key_env} if that variable does hold your {name} key")
    raise UsageError(f"--base-url {host} is {name}'s, which needs its own key: name the variable that holds it", fix)


def check_key_text(key: str, variable: str) -> str:
    """Return `key` if every character can go in an HTTP header (printable ASCII); VipError otherwise.

    A key pasted with a typographic quote, a non-breaking space or a line break fails here with the
    position of the first such character, never the key.
    """
    bad = next((i for i, c in enumerate(key) if not " " <= c <= "~"), None)
    if bad is None:
        return key
    raise VipError(
        f"${variable} holds a character that cannot be sent in an HTTP header (position {bad + 1})",
        "paste the key again",
    )


def chat(config: LLMConfig, messages: list[dict], notify=None) -> tuple[str, bool]:
    """Send one chat-completions request, retrying 429/5xx/timeouts with exponential backoff.

    Args:
        config: endpoint, model, key variable, timeout and retry policy.
        messages: OpenAI-format messages (text, or text + image_url parts).
        notify: told, before each wait, why and for how long ("api.openai.com answered HTTP 429 (rate limited);
            asking again in 6 s (try 2 of 5)"), so a wait of a minute is not taken for a hang.

    Returns:
        (the assistant message text with the key redacted, why the server says it stopped: STOPPED_AT_LIMIT
        (finish_reason "length", the last line cut at its output-token limit), FILTERED (its content filter
        took the answer out, `stopped_by_filter`), or "" (finished, or not said)). The text may be empty;
        the caller decides what that means.

    Raises:
        LLMError: one clear line per failure kind (unreachable, key rejected, wrong URL/model,
            rate-limited, server error, timeout, answer too large, not a chat-completions answer).
    """
    url = chat_url(check_base_url(config.base_url))
    check_key_env(config.api_key_env)
    check_key_transport(config)
    check_key_provider(config)
    key = read_api_key(config)  # checked: the same key secrets_of reads
    secrets = secrets_of(config)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": config.model, "messages": messages}
    if config.temperature is not None:
        body["temperature"] = config.temperature
    for attempt in range(config.retries + 1):
        last = attempt == config.retries
        response = _post(url, headers, body, config, last)
        if response is None:
            _wait(config, attempt, None, f"gave no answer within {config.timeout_s:g} s", notify)
            continue
        if response.status_code == 429 or response.status_code >= 500:
            if last:
                raise _status_error(response, config, key, secrets)
            why = f"answered HTTP {response.status_code}" + (" (rate limited)" if response.status_code == 429 else "")
            _wait(config, attempt, response.headers.get("retry-after"), why, notify)
            continue
        if response.status_code == 400 and "temperature" in body and _refuses_temperature(response):
            raise TemperatureRefused(f"model {config.model!r} at {endpoint_host(config.base_url)} takes no temperature "
                                     f"{config.temperature:g}, only its own default",
                                     "ask without one (vip symptoms generate does so by itself)")
        if response.status_code >= 400:
            raise _status_error(response, config, key, secrets, images=_has_images(messages))
        if 300 <= response.status_code < 400:
            raise _redirect_error(response, config, secrets)
        document = answer_document(response)
        problem = _error_instead_of_answer(document)
        if problem is not None:  # HTTP 200 with an error body (OpenRouter and other gateways send these)
            code, detail = problem
            if _retryable(code) and not last:
                _wait(config, attempt, response.headers.get("retry-after"),
                      f"answered an error in place of an answer (code {code})", notify)
                continue
            raise _error_answer(config, response, code, detail, secrets)
        return redact(_answer_text(document, response, config), secrets), _stop_reason(document)
    raise AssertionError("unreachable")  # pragma: no cover


async def _request(url: str, headers: dict, body: dict, timeout_s: float):
    """POST `body` and read the whole answer (at most MAX_ANSWER_BYTES) into a plain httpx.Response."""
    import httpx

    async with httpx.AsyncClient(timeout=timeout_s, headers=headers) as client:
        async with client.stream("POST", url, json=body) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
                raise AnswerTooLarge(int(declared))
            data = bytearray()
            async for chunk in response.aiter_bytes():  # decoded bytes: a gzip bomb counts at its real size
                data += chunk
                if len(data) > MAX_ANSWER_BYTES:
                    raise AnswerTooLarge(len(data))
            kept = {k: v for k, v in response.headers.items()
                    if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")}
            return httpx.Response(response.status_code, headers=kept, content=bytes(data), request=response.request)


def _request_within(url: str, headers: dict, body: dict, timeout_s: float):
    """`_request` under one deadline of `timeout_s` seconds for everything (TimeoutError past it)."""
    import asyncio

    def run():
        return asyncio.run(asyncio.wait_for(_request(url, headers, body, timeout_s), timeout_s))

    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the usual case: no event loop in this thread
        return run()
    from concurrent.futures import ThreadPoolExecutor  # called from async code (a notebook): own thread

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def _post(url: str, headers: dict, body: dict, config: LLMConfig, last: bool):
    """POST once; None means "timed out, retry"; connection failures and oversized answers raise at once."""
    import asyncio

    import httpx

    host = endpoint_host(config.base_url)
    try:
        return _request_within(url, headers, body, config.timeout_s)
    except (httpx.TimeoutException, TimeoutError, asyncio.TimeoutError):  # the last two differ before 3.11
        if not last:
            return None
        raise LLMError(
            f"LLM endpoint {host} did not answer within {config.timeout_s:g} s ({_tries(config)})",
            "raise --timeout (local models can be slow) or try again later",
        ) from None
    except AnswerTooLarge as error:
        raise LLMError(
            f"LLM endpoint {host} sent an answer of more than {MAX_ANSWER_BYTES // 1_000_000} MB "
            f"({error.size / 1e6:.1f} MB when vip stopped reading); refusing it",
            "a symptom list is a few kB: check --base-url and --model",
        ) from None
    except httpx.ConnectError as error:
        proxy = proxy_for(url)
        tls = tls_failure(error, config.base_url) if proxy is None else None
        if tls is not None:
            raise LLMError(f"cannot reach LLM endpoint {host}: {tls[0]}", tls[1]) from None
        reason = "name not found" if "name" in str(error).lower() else "connection refused"
        if proxy is not None:  # httpx connects to the proxy first: that is what could not be reached
            raise LLMError(f"cannot reach the proxy in {proxy[0]} ({endpoint_host(proxy[1])}) on the way to LLM "
                           f"endpoint {host}: {reason}", "check that proxy's address, or unset the variable (or add "
                           f"{_split(url).hostname} to NO_PROXY) to connect directly") from None
        raise LLMError(
            f"cannot reach LLM endpoint {host}: {reason}",
            "check --base-url and your network, or that the local server is running",
        ) from None
    except httpx.ProxyError as error:  # the proxy refused or could not make the connection: --base-url is not at fault
        raise LLMError(f"the proxy in {proxy_in_use(url)} did not pass the request on to LLM endpoint {host} "
                       f"({proxy_reason(error)})", "check that proxy's address, user and password, or unset the "
                       "variable to connect directly") from None
    except httpx.HTTPError as error:
        raise LLMError(f"request to LLM endpoint {host} failed: {type(error).__name__}", "check --base-url") from None
    except (ImportError, ValueError, httpx.InvalidURL) as error:
        problem = proxy_problem(error)
        if problem is None:
            raise
        raise problem from None


def tls_failure(error: Exception, base_url: str) -> tuple[str, str] | None:
    """(what went wrong, the fix) when an https connection failed in its TLS handshake; None for other failures.

    A plain http server (vLLM, Ollama and llama.cpp serve http) answers a TLS greeting with an http reply,
    which OpenSSL reports as a wrong version number; a certificate this machine does not trust fails its
    verification. Both were reported as "connection refused" while the server was up.
    """
    text = str(error)
    if "WRONG_VERSION_NUMBER" in text or "RECORD_LAYER_FAILURE" in text:
        return "it answers plain http, not https", f"use --base-url {mask_url('http:' + base_url.split(':', 1)[1])}"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        why = text.split("certificate verify failed:", 1)[-1].split("(_ssl.c", 1)[0].strip(" :") or "not trusted"
        return (f"its TLS certificate is not trusted here ({why})",
                "point SSL_CERT_FILE at the certificate of the authority that signed it")
    return None


PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")  # what httpx reads (in either letter case)


def proxy_problem(error: Exception) -> VipError | None:
    """One line for a proxy from the environment that httpx cannot use (None for other errors).

    httpx reads HTTP(S)_PROXY and ALL_PROXY: a SOCKS proxy needs its optional `socksio` package, a
    scheme other than http, https or socks5 is refused with a ValueError, and a proxy URL it cannot read
    (a port that is not a number) with an InvalidURL (--base-url was read before any request). None of
    these is a bug in vip.
    """
    import httpx

    text = str(error).lower()
    if isinstance(error, httpx.InvalidURL):
        return VipError(f"{proxy_variables()} holds a proxy URL httpx cannot read "
                        f"({redact(str(error), proxy_secrets())})",
                        "give a proxy URL such as http://proxy.example.org:3128, or unset the variable")
    if isinstance(error, ImportError) and "socks" in text:
        return VipError(f"{proxy_variables('socks')} names a SOCKS proxy, and httpx's SOCKS support is not installed",
                        "pip install 'httpx[socks]', or unset the variable to connect directly")
    if isinstance(error, ValueError) and "proxy" in text:
        scheme = re.search(r"url\('?([a-z0-9+.-]+):", text)
        variables = proxy_variables(f"{scheme.group(1)}:" if scheme else "")
        what = f"its scheme {scheme.group(1)}://" if scheme else "its URL"
        return VipError(f"{variables} holds a proxy httpx cannot use ({what})",
                        "give an http://, https:// or socks5:// proxy URL, or unset the variable")
    return None


def proxy_variables(prefix: str = "") -> str:
    """The proxy variables (PROXY_VARIABLES, either letter case) whose value starts with `prefix`, all set
    ones for "" (e.g. "HTTPS_PROXY, ALL_PROXY"); "a proxy variable" when none is."""
    found = [name for name in PROXY_VARIABLES
             if any(value.lower().startswith(prefix) for value in _proxy_values(name))]
    return ", ".join(found) or "a proxy variable"


def _proxy_values(name: str) -> list[str]:
    """The values set for proxy variable `name`, in either letter case ("HTTPS_PROXY", "https_proxy")."""
    return [value for value in (os.environ.get(spelled, "").strip() for spelled in (name, name.lower())) if value]


def proxy_in_use(url: str) -> str:
    """The variable whose proxy httpx uses for `url` (`_chosen_proxy`); "a proxy variable" when none is set."""
    chosen = _chosen_proxy(url)
    return chosen[0] if chosen else "a proxy variable"


def proxy_for(url: str) -> tuple[str, str] | None:
    """(variable, proxy URL) of the proxy from the environment that a request to `url` goes through, as
    httpx chooses it (`_chosen_proxy`; none for a host NO_PROXY names); None when the request goes direct."""
    import urllib.request

    parts = _split(url)
    if parts is None or not parts.hostname:
        return None
    proxies = urllib.request.getproxies_environment()
    if "no" in proxies and urllib.request.proxy_bypass_environment(parts.hostname, proxies):
        return None
    return _chosen_proxy(url)


def _chosen_proxy(url: str) -> tuple[str, str] | None:
    """(variable, its value) of the proxy httpx takes for `url`'s scheme: HTTPS_PROXY for https (HTTP_PROXY for
    http) when set (in either letter case), else ALL_PROXY; None when neither is. NO_PROXY is not read here."""
    first = "HTTPS_PROXY" if url.lower().startswith("https:") else "HTTP_PROXY"
    for name in (first, "ALL_PROXY"):
        values = _proxy_values(name)
        if values:
            return name, values[0]
    return None


def proxy_reason(error: Exception) -> str:
    """What a proxy answered (e.g. "407 Proxy Authentication Required"), on one line, with the user names
    and passwords of the proxy variables masked; the error's type when it says nothing."""
    text = " ".join(str(error).split())
    return redact(text, proxy_secrets()) if text else type(error).__name__


def proxy_secrets() -> list[str]:
    """The user names and passwords in the proxy variables (PROXY_VARIABLES, either letter case), for redact()."""
    return [secret for name in PROXY_VARIABLES for value in _proxy_values(name) for secret in url_secrets(value)]


def _wait(config: LLMConfig, attempt: int, retry_after: str | None, why: str, notify) -> None:
    """Sleep before retry `attempt + 1` (`_backoff`), having told `notify` why and for how long."""
    wait = _backoff(config, attempt, retry_after)
    if notify is not None:
        notify(f"{endpoint_host(config.base_url)} {why}; asking again in {wait:.3g} s "
               f"(try {attempt + 2} of {config.retries + 1})")
    time.sleep(wait)


def _backoff(config: LLMConfig, attempt: int, retry_after: str | None) -> float:
    """Seconds to wait before retry `attempt + 1`: Retry-After if given, else base * 2**attempt."""
    wait = _parse_retry_after(retry_after)
    if wait is None:
        wait = config.backoff_s * (2**attempt)
    return max(0.0, min(wait, config.max_wait_s))


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (number or HTTP date), or None."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def _tries(config: LLMConfig) -> str:
    count = config.retries + 1
    return "1 try" if count == 1 else f"{count} tries"


def _server_detail(response, secrets: list[str]) -> str:
    """The server's own error message with the secrets redacted, then shortened (in that order)."""
    try:
        data = response.json()
    except (ValueError, RecursionError):
        return _shown_detail(response.text, secrets)
    return _shown_detail(_error_message(data), secrets)


def _error_message(data: object) -> object:
    """The message of an error body: `{"error": {"message": ...}}`, `{"error": "..."}`, or the body itself."""
    detail = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(detail, dict):
        detail = detail.get("message") or detail
    return detail


def _shown_detail(detail: object, secrets: list[str]) -> str:
    """`detail` on one line, fit to print, the secrets redacted and then shortened to 200 characters."""
    from vipcli.console import printable

    return printable(redact(" ".join(str(detail).split()), secrets))[:200]


def _error_instead_of_answer(document: object) -> tuple[object, object] | None:
    """(its code, its message) when an answer sent with a success status is an error body and holds no choices
    (OpenRouter and other gateways send `{"error": {"message": ..., "code": 429}}` with HTTP 200 when the
    provider behind them failed); None for an answer."""
    if not isinstance(document, dict) or document.get("choices") or not document.get("error"):
        return None
    error = document["error"]
    code = error.get("code") if isinstance(error, dict) else None
    return code, _error_message(document)


def _retryable(code: object) -> bool:
    """Whether an error code in an answer's body says what a 429 or 5xx status does: try again later."""
    try:
        number = int(str(code))
    except ValueError:
        return False
    return number == 429 or 500 <= number < 600


def _error_answer(config: LLMConfig, response, code: object, detail: object, secrets: list[str]) -> LLMError:
    """One line for an error sent in place of an answer with a success status."""
    host = endpoint_host(config.base_url)
    after = f" after {_tries(config)}" if _retryable(code) else ""
    coded = f" (code {_shown_detail(code, secrets)})" if code not in (None, "") else ""
    return LLMError(
        f"LLM endpoint {host} answered HTTP {response.status_code} with an error in place of an answer{coded}"
        f"{after}: {_shown_detail(detail, secrets)}",
        "try again later (answers already received are cached), or another --model" if _retryable(code) else
        "check --model and the server's settings against what it says",
    )


def _refuses_temperature(response) -> bool:
    """Whether an HTTP 400 answer refuses the temperature sent (OpenAI: `"param": "temperature"`, "Unsupported
    value: 'temperature' does not support 0 with this model. Only the default (1) value is supported.")."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError, RecursionError):
        return False
    if not isinstance(error, dict):
        return False
    message = str(error.get("message", "")).lower()
    return error.get("param") == "temperature" or ("'temperature'" in message and "support" in message)


def _has_images(messages: list[dict]) -> bool:
    """Whether any message carries an image part (stage 2's grid)."""
    return any(isinstance(part, dict) and part.get("type") == "image_url"
               for message in messages if isinstance(message.get("content"), list) for part in message["content"])


def _status_error(response, config: LLMConfig, key: str | None, secrets: list[str], images: bool = False) -> LLMError:
    """One clear error for an HTTP failure status (`secrets`: what to redact from the server's text; `images`:
    the request carried an image, which a text-only --model refuses)."""
    host, code = endpoint_host(config.base_url), response.status_code
    var = f"${config.api_key_env}" if config.api_key_env else "the key variable"
    if code in (401, 403):
        if _has_credentials(config.base_url):  # httpx sends them as Basic auth, in place of any key
            sent_instead = f" (sent in place of the key in {var})" if key else ""
            return LLMError(
                f"LLM endpoint {host} rejected the credentials in --base-url with HTTP {code}{sent_instead}",
                "check the user name and password (or key) in --base-url, or remove them from --base-url and "
                f"export the key in {var[1:] if config.api_key_env else DEFAULT_KEY_ENV} instead",
            )
        if not key and _query_secrets(config.base_url):  # the key went in the URL's query: that is what it refused
            return LLMError(
                f"LLM endpoint {host} rejected the key in the query of --base-url with HTTP {code}",
                f"check that key, or export it in {var[1:] if config.api_key_env else DEFAULT_KEY_ENV} instead if the "
                "server takes a Bearer key",
            )
        if not key:
            return LLMError(
                f"LLM endpoint {host} needs an API key (answered HTTP {code}) but {var} is not set",
                f"export {var[1:]}=...",
            )
        return LLMError(
            f"LLM endpoint {host} rejected the API key in {var} with HTTP {code}",
            f"check that {var} holds a valid key for {host}",
        )
    detail = _server_detail(response, secrets)
    if code == 404:
        return LLMError(
            f"LLM endpoint {host} answered 404 for /chat/completions with model {config.model!r}: {detail}",
            "check --base-url (usually ends in /v1) and --model (a name the server lists)",
        )
    if code == 429:
        return LLMError(
            f"LLM endpoint {host} kept rate-limiting (HTTP 429) after {_tries(config)}: {detail}",
            "wait a minute and rerun (answers already received are cached) or check your quota",
        )
    if code >= 500:
        return LLMError(
            f"LLM endpoint {host} failed with HTTP {code} after {_tries(config)}: {detail}",
            "the server is having trouble; try again later",
        )
    return LLMError(
        f"LLM endpoint {host} refused the request (HTTP {code}): {detail}",
        "with --images the --model must accept images (e.g. gpt-4o, llava, qwen2-vl)" if images else
        "check --model and the server's settings against what it says",
    )


def _redirect_error(response, config: LLMConfig, secrets: list[str]) -> LLMError:
    """One line for a 3xx answer: redirects are not followed (the key, or the URL's credentials, would go
    along to wherever the server points, perhaps over plain http), so the user is told where it points:
    the scheme and host of its Location only, masked, never its path or query."""
    host, code = endpoint_host(config.base_url), response.status_code
    location = response.headers.get("location", "").strip()
    parts = _split(location) if location else None
    if parts is not None and parts.scheme in ("http", "https") and parts.hostname:
        from vipcli.console import printable

        target = printable(redact(f"{parts.scheme}://{endpoint_host(location)}", secrets))
        where = f"a redirect to {target}"
    else:
        where = "a redirect to another path of the same server" if location else "a redirect"
    return LLMError(
        f"LLM endpoint {host} answered HTTP {code}, {where}; vip does not follow redirects (the key or the "
        "credentials would go along)",
        "give the address the server redirects to as --base-url, often its https:// form",
    )


def _stop_reason(document: object) -> str:
    """Why the server says the answer (`answer_document`) stopped: STOPPED_AT_LIMIT, FILTERED
    (`stopped_by_filter`) or ""."""
    try:
        choice = document["choices"][0]
        finish = choice.get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""
    if finish == "length":
        return STOPPED_AT_LIMIT
    return FILTERED if stopped_by_filter(finish, choice.get("content_filter_results")) else ""


def stopped_by_filter(finish_reason: object, filter_results: object = None) -> bool:
    """Whether a provider's content filter stopped the answer: OpenAI's and Azure's `finish_reason:
    "content_filter"`, what gateways (LiteLLM, OpenRouter, Vertex) pass on of Anthropic's `refusal` stop reason
    and Gemini's `SAFETY`, `PROHIBITED_CONTENT`, ... finish reasons (any letter case), or Azure's
    `content_filter_results` marking a category `filtered: true`."""
    if isinstance(finish_reason, str) and finish_reason.lower() in FILTER_REASONS:
        return True
    return isinstance(filter_results, dict) and any(
        isinstance(result, dict) and result.get("filtered") is True for result in filter_results.values())


EVENT_STREAM = "text/event-stream"


def answer_document(response) -> object:
    """The JSON document of a chat-completions answer: the body as sent, or, from a server that streams
    whatever it is asked (server-sent events of `chat.completion.chunk`s, `data: [DONE]` at the end), the
    chunks put together as one answer (`assemble_stream`); None when the body is neither."""
    text = response.text
    if EVENT_STREAM in response.headers.get("content-type", "") or text.lstrip().startswith("data:"):
        return assemble_stream(text)
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


def assemble_stream(text: str) -> dict | None:
    """The chat-completions answer a stream of server-sent events carries, in the shape a plain answer has.

    Each `data:` line holds a chunk whose `choices[0].delta.content` is the next piece of the text (a
    `message.content` is taken too); the last `finish_reason` given is the answer's. An event holding an
    `error` makes the answer that error. None when no event holds a chunk.

    Args:
        text: the body as sent, e.g. 'data: {"choices": [{"delta": {"content": "- Dark"}}]}\n\ndata: [DONE]'.
    """
    import json

    pieces, refusals, finish, filters, seen = [], [], None, None, False
    for line in text.splitlines():
        if not line.startswith("data:") or line[5:].strip() == "[DONE]":
            continue
        try:
            chunk = json.loads(line[5:])
        except (ValueError, RecursionError):
            continue
        if isinstance(chunk, dict) and chunk.get("error"):
            return {"error": chunk["error"]}
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            continue
        seen, choice = True, choices[0]
        delta = choice.get("delta") or choice.get("message") or {}
        if isinstance(delta, dict):
            pieces.append(content_text(delta.get("content")))
            refusals.append(content_text(delta.get("refusal")))
        finish = choice.get("finish_reason") or finish
        filters = choice.get("content_filter_results") or filters
    if not seen:
        return None
    message = {"role": "assistant", "content": "".join(pieces), "refusal": "".join(refusals) or None}
    return {"choices": [{"message": message, "finish_reason": finish, "content_filter_results": filters}]}


def content_text(content: object) -> str:
    """The text of a message's content: a string, or a list of parts whose `text` is kept (images, empty
    and null parts left out); "" for none."""
    if isinstance(content, list):
        return "\n".join(part["text"] for part in content
                         if isinstance(part, dict) and isinstance(part.get("text"), str))
    return content if isinstance(content, str) else "" if content is None else str(content)


def _answer_text(document: object, response, config: LLMConfig) -> str:
    """The assistant text of a chat-completions answer (`answer_document`): its content, a string or a list
    of text parts; a refusal the server puts in its own field reads as one."""
    host = endpoint_host(config.base_url)
    choices = document.get("choices") if isinstance(document, dict) else None
    if choices == []:  # a well-formed answer with nothing in it (a content filter, an overloaded server)
        raise LLMError(f"LLM endpoint {host} answered with an empty list of choices (no text at all)",
                       "try again, or another --model")
    choice = choices[0] if isinstance(choices, list) else None
    message = choice.get("message", choice.get("delta")) if isinstance(choice, dict) else None
    if message is None and isinstance(choice, dict) and "message" in choice:  # `"message": null`: no text
        message = {}
    if not isinstance(message, dict):
        raise LLMError(f"LLM endpoint {host} did not return a chat-completions answer{_what_it_sent(response)}",
                       "is --base-url an OpenAI-compatible root such as http://localhost:8000/v1?")
    refusal = content_text(message.get("refusal"))
    if refusal:
        return f"I'm sorry: {refusal}"
    return content_text(message.get("content"))


def _what_it_sent(response) -> str:
    """" (it sent a text/html page, not JSON)" and the like for an answer that is no JSON; "" for JSON."""
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    try:
        response.json()
    except (ValueError, RecursionError):
        return f" (it sent {'a ' + kind + ' page' if kind else 'something'}, not JSON)"
    return ""
