"""`vip symptoms generate` against hostile servers: echoed keys, slow drips, huge answers (#14)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from conftest import symptoms_workspace
from vipcli.cli.main import main


KEY = "sk-proj-Zq8Xw3Lm5Rt7Yv2Nb4Kc6Hd9Jf1Gs0Pa"
BULLETS = "- Asymmetric shape\n- Irregular jagged edges\n- Several colors\n- Small dark dots\n- Blue white veil"


def fragments(key: str, size: int = 6) -> list[str]:
    """Every substring of `key` of `size` characters (longer fragments contain one of these)."""
    return [key[i : i + size] for i in range(len(key) - size + 1)]


def leaked(text: str, key: str = KEY) -> list[str]:
    """The 6-character fragments of `key` found in `text`."""
    return [f for f in fragments(key) if f in text]


def everything_written(tmp_path: Path) -> str:
    """The text of every file vip wrote (packs in work/, answers in the cache)."""
    return "\n".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())


@pytest.fixture
def server(llm_server):
    """The scripted server of conftest, under this module's shorter name."""
    return llm_server


@pytest.fixture
def env(tmp_path, monkeypatch):
    symptoms_workspace(tmp_path, monkeypatch, KEY)


def generate(capsys, server, *args) -> tuple[int, str, str]:
    code = main(["symptoms", "generate", "--base-url", server.url, "--backoff", "0.01", "--disease", "melanoma",
                 "--modality", "dermoscopic images", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- the key never leaves, whatever the server sends --------------------------------------------


@pytest.mark.parametrize("status", [400, 404, 500])
def test_a_key_echoed_deep_in_an_error_body_is_never_printed(capsys, env, server, status, tmp_path):
    server.fail(status, "x" * 150 + " you sent {AUTH} and " + KEY[5:19] + " and " + KEY[-8:], echo_auth=True,
                forever=status == 500)
    code, out, err = generate(capsys, server, "--retries", "0")
    assert code == 1 and str(status) in err and "[redacted]" in err
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert leaked(out + err) == [] and leaked(everything_written(tmp_path)) == []


def test_a_key_echoed_in_a_normal_answer_is_kept_out_of_pack_cache_and_output(capsys, env, server, tmp_path):
    server.answer(BULLETS + "\n- Your key is {AUTH}\n- Part of it: " + KEY[10:22], echo_auth=True)
    code, out, err = generate(capsys, server, "--n", "6")
    assert code == 0, err
    pack = Path("melanoma.yaml").read_text()
    assert "Your key is Bearer sk-[redacted]" in pack and "Part of it: [redacted]" in pack
    answers = list((tmp_path / "cache" / "llm").glob("*.json"))
    assert len(answers) == 1 and "Bearer sk-[redacted]" in json.loads(answers[0].read_text())["answer"]
    assert leaked(out + err) == [] and leaked(everything_written(tmp_path)) == []


def test_a_key_echoed_upper_case_or_base64_encoded_is_kept_out_too(capsys, env, server, tmp_path):
    import base64

    encoded = [base64.b64encode((prefix + KEY).encode()).decode() for prefix in ("", "u", "user:")]
    server.answer(BULLETS + "\n- Shouted: " + KEY.upper() + "\n- Basic " + " / ".join(encoded)
                  + "\n- Safe " + base64.urlsafe_b64encode(("ab" + KEY).encode()).decode())
    code, out, err = generate(capsys, server, "--n", "6")
    assert code == 0, err
    written = everything_written(tmp_path) + out + err
    key_parts = [text[(8 * len(prefix) + 5) // 6:-3] for prefix, text in zip(("", "u", "user:"), encoded)]
    for form in [KEY.upper(), *key_parts]:  # (the base64 characters that carry the key's bits only)
        assert leaked(written, form) == [], form
    assert leaked(written.lower(), KEY.lower()) == []


def test_the_mask_survives_the_markdown_clean_up_in_what_is_printed(capsys, env, server):
    server.answer(BULLETS + "\n- **Your key** is **" + KEY + "**\n- Sure! Here is " + KEY + " for you:")
    code, out, err = generate(capsys, server, "--n", "4")
    assert code == 0, err
    assert "(not kept, beyond --n 4: " in out and "Your key is sk-[redacted]" in out
    assert leaked(out + err) == [] and "sk-;" not in out and not out.rstrip().endswith("sk-)")


def test_redaction_masks_the_key_itself_whatever_precedes_it_and_no_ordinary_word():
    from vipcli.symptoms.llm import redact

    text = "\u0130" * 8 + " key " + KEY + " done"  # "İ" lower-cases to two characters
    assert redact(text, KEY) == "\u0130" * 8 + " key sk-[redacted] done"  # "sk-" is in every OpenAI key
    # fragments of the public prefix "sk-proj-" alone are not the key: ordinary words stay
    assert redact("task-progress, risk-profile", KEY) == "task-progress, risk-profile"
    assert leaked(redact("quoted: " + KEY[4:20], KEY)) == []


def test_a_key_in_an_answer_cached_by_an_older_vip_is_redacted_on_reading(capsys, env, server, tmp_path):
    server.answer(BULLETS)
    assert generate(capsys, server)[0] == 0
    [entry] = (tmp_path / "cache" / "llm").glob("*.json")
    entry.write_text(json.dumps({"answer": BULLETS + "\n- Key " + KEY, "model": "gpt-4o"}))
    code, out, err = generate(capsys, server, "--force", "--n", "6")
    assert code == 0 and len(server.requests) == 1, err
    assert leaked(out + err) == [] and leaked(Path("melanoma.yaml").read_text()) == []


# --- credentials in --base-url are secrets too -------------------------------------------------------


def generate_at(capsys, url: str, *args) -> tuple[int, str, str]:
    """`vip symptoms generate` for melanoma with --base-url `url` (credentials, query...)."""
    code = main(["symptoms", "generate", "--base-url", url, "--backoff", "0.01", "--disease", "melanoma",
                 "--modality", "dermoscopic images", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def with_password(server, user: str = "user") -> str:
    """The server's URL with `user`:KEY in it, as gateways that take Basic credentials are given."""
    return server.url.replace("http://", f"http://{user}:{KEY}@")


def basic_forms(user: str = "user") -> list[str]:
    """The base64 characters of a Basic header for user:KEY that carry the key's bits only."""
    import base64

    encoded = base64.b64encode(f"{user}:{KEY}".encode()).decode()
    return [encoded[(8 * (len(user) + 1) + 5) // 6 : -3]]


def no_leak(text: str) -> bool:
    """True when `text` holds no 6-character fragment of KEY, plain, in any case or in a Basic header."""
    return all(leaked(text, form) == [] for form in basic_forms()) and leaked(text.lower(), KEY.lower()) == []


@pytest.mark.parametrize("status", [400, 500])
def test_a_password_in_base_url_echoed_in_an_error_is_never_printed(capsys, env, server, status, tmp_path,
                                                                    monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    server.fail(status, "you sent {AUTH} for " + KEY.upper(), echo_auth=True, forever=True)
    code, out, err = generate_at(capsys, with_password(server), "--retries", "0")
    assert code == 1 and str(status) in err and "[redacted]" in err and err.count("error:") == 1
    assert server.requests[0]["headers"]["Authorization"].startswith("Basic ")
    assert no_leak(out + err) and no_leak(everything_written(tmp_path))


def test_a_password_in_base_url_echoed_in_an_answer_stays_out_of_pack_cache_and_output(capsys, env, server,
                                                                                      tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    server.answer(BULLETS + "\n- Header {AUTH}\n- Password " + KEY + "\n- Part " + KEY[9:21], echo_auth=True)
    code, out, err = generate_at(capsys, with_password(server), "--n", "4")
    assert code == 0, err
    assert re.search(r"Header Basic dXNlcjp\[redacted\]", out) and "Password sk-[redacted]" in out  # "user:" stays
    assert redact_url_secrets("task-progress", with_password(server)) == "task-progress"
    assert no_leak(out + err) and no_leak(everything_written(tmp_path))


def redact_url_secrets(text: str, url: str) -> str:
    from vipcli.symptoms.llm import redact, url_secrets

    return redact(text, url_secrets(url))


def test_a_key_in_the_base_url_query_is_sent_there_and_redacted(capsys, env, server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    server.answer(BULLETS + "\n- You asked with " + KEY)
    code, out, err = generate_at(capsys, f"{server.url}/?api-key={KEY}&x=1", "--n", "6")
    assert code == 0, err
    assert server.requests[0]["path"] == f"/v1/chat/completions?api-key={KEY}&x=1"
    assert "You asked with sk-[redacted]" in Path("melanoma.yaml").read_text()
    assert no_leak(out + err) and no_leak(everything_written(tmp_path))


def test_a_short_query_value_is_not_taken_for_a_secret(capsys, env, server):
    server.answer("1. Larger than six millimeters\n2. Asymmetric shape\n3. Several colors\n4. Small dark dots")
    code, out, err = generate_at(capsys, f"{server.url}?v=1")
    assert code == 0 and "1. Larger than six millimeters" in out and "[redacted]" not in out + err, err


def test_an_api_version_in_the_base_url_is_no_secret(capsys, env, server):
    """Azure OpenAI's `?api-version=2024-02-15-preview` is no secret: masking it ate words and dates of
    the answers; and two versions are two endpoints, never sharing cached answers."""
    from vipcli.symptoms.cache import cache_key
    from vipcli.symptoms.llm import mask_url

    server.answer("1. A preview of the border on review\n2. Colours seen on 2024-02-15\n3. Asymmetry\n4. Dots")
    code, out, err = generate_at(capsys, f"{server.url}?api-version=2024-02-15-preview")
    assert code == 0 and "A preview of the border on review" in out and "2024-02-15" in out, err
    assert "[redacted]" not in out + err
    keys = {cache_key(f"https://h.example/v1?api-version={v}", "m", [], 0.0) for v in ("2024-02-15", "2024-06-01")}
    assert len(keys) == 2
    assert mask_url("https://a.example/v1?user=me@corp.com&api-key=SECRET99") == \
        "https://a.example/v1?user=me@corp.com&api-key=[redacted]"  # the host stays, the key does not
    assert cache_key("https://a.example/v1?user=me@corp.com", "m", [], 0.0) != \
        cache_key("https://b.example/v1?user=me@corp.com", "m", [], 0.0)


def test_a_password_in_base_url_in_an_answer_cached_by_an_older_vip_is_redacted(capsys, env, server, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    server.answer(BULLETS)
    assert generate_at(capsys, with_password(server))[0] == 0
    [entry] = (tmp_path / "cache" / "llm").glob("*.json")
    entry.write_text(json.dumps({"answer": BULLETS + "\n- Key " + KEY, "model": "gpt-4o"}))
    code, out, err = generate_at(capsys, with_password(server), "--force", "--n", "6")
    assert code == 0 and len(server.requests) == 1, err
    assert no_leak(out + err) and no_leak(Path("melanoma.yaml").read_text())


def test_the_cache_is_keyed_without_the_credentials_in_base_url(capsys, env, server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    server.answer(BULLETS)
    assert generate_at(capsys, with_password(server))[0] == 0
    code, out, err = generate_at(capsys, with_password(server).replace(KEY, KEY[::-1]), "--force")
    assert code == 0 and "answer from cache" in err and len(server.requests) == 1, err


@pytest.mark.parametrize("typo", ["htp://user:{key}@127.0.0.1:9/v1", "http://user:{key}@127.0.0.1:99999/v1",
                                  "http://[user:{key}@127.0.0.1/v1", "user:{key}@127.0.0.1:9/v1",
                                  "ftp://127.0.0.1:9/v1?api-key={key}"])
def test_a_base_url_that_is_refused_is_shown_with_its_credentials_masked(capsys, env, server, typo, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    code, out, err = generate_at(capsys, typo.format(key=KEY))
    assert code == 2 and "is not an http(s) URL" in err and "[redacted]" in err and err.count("error:") == 1
    assert no_leak(out + err) and server.requests == []


@pytest.mark.parametrize("typo", ["http:/user:{key}@127.0.0.1:9/v1", "https:\\\\user:{key}@127.0.0.1:9/v1",
                                  "http://user:{head}/{tail}@127.0.0.1:9/v1", "http://user:{head}#{tail}@127.0.0.1:9/v1",
                                  "http://user:{head}?{tail}@127.0.0.1:9/v1"])
def test_a_password_that_breaks_the_url_is_masked_whole_in_the_refusal(capsys, env, server, typo, monkeypatch):
    """A slash missing after the scheme, or a password holding an unencoded "/", "#" or "?", leaves no
    host to read: everything up to the last "@" is still masked, the password's pieces included."""
    monkeypatch.delenv("OPENAI_API_KEY")
    code, out, err = generate_at(capsys, typo.format(key=KEY, head=KEY[:12], tail=KEY[12:]))
    assert code == 2 and "is not an http(s) URL" in err and "[redacted]@127.0.0.1:9/v1" in err, err
    assert no_leak(out + err) and server.requests == []


@pytest.mark.parametrize("url, reason", [("http://user:{key}@256.1.1.1:9/v1", "Invalid IPv4 address"),
                                         ("http://user:{key}@127.0.0.1:9/v1\x01", "non-printable"),
                                         ("http://user:{key}\x01@127.0.0.1:9/v1", "non-printable")])
def test_a_base_url_httpx_cannot_send_is_one_line_without_credentials(capsys, env, server, url, reason):
    code, out, err = generate_at(capsys, url.format(key=KEY))
    assert code == 2 and "cannot be sent: " in err and reason in err and err.count("error:") == 1
    assert "bug in vip" not in err and no_leak(out + err) and server.requests == []


def test_a_base_url_refused_under_vip_debug_shows_no_credentials_either(capsys, env, server, monkeypatch):
    from vipcli.errors import UsageError

    monkeypatch.setenv("VIP_DEBUG", "1")
    with pytest.raises(UsageError) as raised:
        generate_at(capsys, f"htp://user:{KEY}@127.0.0.1:9/v1")
    assert str(raised.value).startswith("--base-url 'htp://[redacted]@127.0.0.1:9/v1' is not") and no_leak(
        str(raised.value))


def test_credentials_in_base_url_that_the_server_rejects_are_named(capsys, env, server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    server.fail(401, "bad credentials {AUTH}", echo_auth=True)
    code, out, err = generate_at(capsys, with_password(server))
    assert code == 1 and "rejected the credentials in --base-url with HTTP 401" in err and no_leak(out + err)


def test_a_401_with_both_url_credentials_and_a_key_blames_the_credentials_that_were_sent(capsys, env, server):
    """httpx sends a URL's user and password as Basic auth in place of the Bearer key: a 401 used to say
    "rejected the API key in $OPENAI_API_KEY", a key that never left the machine."""
    server.fail(401, "bad credentials {AUTH}", echo_auth=True)
    code, out, err = generate_at(capsys, with_password(server))
    assert server.requests[0]["headers"]["Authorization"].startswith("Basic ")
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and line.startswith("error: LLM endpoint ") and (
        "rejected the credentials in --base-url with HTTP 401 (sent in place of the key in $OPENAI_API_KEY)" in line)
    assert "rejected the API key" not in err and no_leak(out + err)


# --- --api-key-env takes a variable name, never the key ------------------------------------------


PASTED_KEYS = [KEY, "hf_" + KEY[8:], "a3f9" + "0e1d" * 8, "Zq8Xw3Lm5Rt7Yv2Nb4Kc6Hd9Jf1Gs0Pa_x"]


@pytest.mark.parametrize("pasted", PASTED_KEYS)
def test_a_key_given_to_api_key_env_is_refused_without_repeating_it(capsys, env, server, pasted, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    code, out, err = generate(capsys, server, "--api-key-env", pasted)
    assert code == 2 and server.requests == []
    assert err.count("error:") == 1 and "Traceback" not in err
    assert "--api-key-env takes the name of an environment variable (such as OPENAI_API_KEY), not the key" in err
    assert leaked(out + err, pasted) == []


def test_a_key_given_to_api_key_env_is_not_in_the_debug_traceback_either(capsys, env, server, monkeypatch):
    from vipcli.errors import UsageError

    monkeypatch.setenv("VIP_DEBUG", "1")
    with pytest.raises(UsageError) as raised:
        generate(capsys, server, "--api-key-env", KEY)
    assert leaked(str(raised.value)) == [] and server.requests == []


@pytest.mark.parametrize("name", ["my_llm_key", "LLM_KEY_2", "OPENAI_API_KEY_FOR_PROJECT_2024"])
def test_ordinary_variable_names_are_accepted_by_api_key_env(capsys, env, server, name, monkeypatch):
    monkeypatch.setenv(name, KEY)
    server.answer(BULLETS)
    code, _, err = generate(capsys, server, "--api-key-env", name)
    assert code == 0, err
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("variable, value", [("MY_LLM_KEY", None), ("MY_LLM_KEY", "  "), ("OPENAI_API_KEY", None)])
def test_a_named_key_variable_that_holds_nothing_is_refused_before_any_request(capsys, env, server, monkeypatch,
                                                                                variable, value):
    """`--api-key-env MY_LLM_KEY` with the variable unset (a typo, a forgotten export) used to send no key at all:
    one line naming the variable and both fixes, before anything is asked or written."""
    monkeypatch.delenv("OPENAI_API_KEY")
    if value is not None:
        monkeypatch.setenv(variable, value)
    server.answer(BULLETS)
    code, out, err = generate(capsys, server, "--api-key-env", variable)
    assert code == 2 and server.requests == [] and not Path("melanoma.yaml").exists()
    assert err.count("error:") == 1 and "Traceback" not in err
    assert f"--api-key-env {variable}: ${variable} is not set (or is empty)" in err
    assert f"export {variable}=..., or pass --api-key-env '' if the server needs no key" in " ".join(err.split())


def test_no_named_variable_and_no_key_still_asks_a_local_server_without_one(capsys, env, server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    server.answer(BULLETS).answer(BULLETS)
    assert generate(capsys, server)[0] == 0
    assert generate(capsys, server, "--api-key-env", "", "--no-cache", "--force")[0] == 0
    assert [r["headers"].get("Authorization") for r in server.requests] == [None, None]


def test_the_python_interface_refuses_an_unset_variable_other_than_the_default(env, monkeypatch):
    from vipcli.errors import UsageError
    from vipcli.symptoms.llm import LLMConfig, read_api_key

    monkeypatch.delenv("OPENAI_API_KEY")
    local = "http://127.0.0.1:9/v1"
    assert read_api_key(LLMConfig(base_url=local)) is None  # the default variable, unset: no key
    with pytest.raises(UsageError, match=r"\$TEAM_LLM_KEY is not set"):
        read_api_key(LLMConfig(base_url=local, api_key_env="TEAM_LLM_KEY"))


def test_the_default_key_is_not_sent_over_plain_http_to_another_machine(capsys, env):
    """$OPENAI_API_KEY is read by default: `--base-url http://10.x` would send the user's OpenAI key
    over the network unencrypted. Refused before any request, naming the fixes, never the key."""
    from types import SimpleNamespace

    code, out, err = generate(capsys, SimpleNamespace(url="http://192.0.2.7:8000/v1"))
    assert code == 2 and err.count("error:") == 1 and "Traceback" not in err
    assert ("--base-url http://192.0.2.7:8000 is plain http to another machine: $OPENAI_API_KEY would cross the "
            "network unencrypted") in err
    assert "--api-key-env OPENAI_API_KEY to send it anyway" in err and leaked(out + err) == []


@pytest.mark.parametrize("url, key_over_http, variable", [
    ("https://10.0.0.5/v1", False, "OPENAI_API_KEY"),  # encrypted
    ("http://127.0.0.1:8000/v1", False, "OPENAI_API_KEY"), ("http://localhost:11434/v1", False, "OPENAI_API_KEY"),
    ("http://[::1]:8080/v1", False, "OPENAI_API_KEY"), ("http://llm.localhost/v1", False, "OPENAI_API_KEY"),
    ("http://0.0.0.0:8000/v1", False, "OPENAI_API_KEY"), ("http://[::]:8000/v1", False, "OPENAI_API_KEY"),  # vLLM's
    ("http://10.0.0.5:8000/v1", True, "OPENAI_API_KEY"),  # the user named the variable: meant to go there
    ("http://10.0.0.5:8000/v1", False, ""),  # no key is sent
    ("http://10.0.0.5:8000/v1", False, "UNSET_KEY_VARIABLE"),
])
def test_a_key_goes_over_https_to_this_machine_or_where_the_user_named_it(env, url, key_over_http, variable):
    from vipcli.symptoms.llm import LLMConfig, check_key_transport

    check_key_transport(LLMConfig(base_url=url, api_key_env=variable, key_over_http=key_over_http))


@pytest.mark.parametrize("variable, value, expected", [
    ("ALL_PROXY", "socks5://127.0.0.1:9", "ALL_PROXY names a SOCKS proxy, and httpx's SOCKS support is not installed"),
    ("HTTP_PROXY", "ftp://bob:Pw9hunter2@127.0.0.1:9", "HTTP_PROXY holds a proxy httpx cannot use (its scheme ftp://)"),
    ("HTTP_PROXY", "http://bob:Pw9hunter2@127.0.0.1:p0rt", "HTTP_PROXY holds a proxy URL httpx cannot read (Invalid port"),
])
def test_a_proxy_httpx_cannot_use_is_one_line_naming_the_variable(capsys, env, server, monkeypatch, variable, value,
                                                                   expected):
    """Not "unexpected ImportError/ValueError ... a bug in vip" (with the proxy's user name in it)."""
    import importlib.util

    if variable == "ALL_PROXY" and importlib.util.find_spec("socksio") is not None:
        pytest.skip("httpx's SOCKS support is installed here")
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("NO_PROXY", "")
    code, _, err = generate(capsys, server, "--retries", "0")
    assert code == 1 and err.count("error:") == 1 and expected in err, err
    assert "bug in vip" not in err and "bob" not in err and "Pw9hunter2" not in err


def test_a_proxy_that_refuses_the_connection_is_named_not_the_base_url(capsys, env, server, monkeypatch):
    """A proxy that answers CONNECT with an error (here 501; a 407 for a wrong password) read "request to LLM
    endpoint ... failed: ProxyError (check --base-url)": the URL was fine, the proxy was not."""
    monkeypatch.setenv("HTTPS_PROXY", f"http://bob:Pw9hunter2@{server.host}")  # a server that cannot CONNECT
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")  # not used for https when HTTPS_PROXY is set
    monkeypatch.setenv("NO_PROXY", "")
    code, _, err = generate_at(capsys, server.url.replace("http:", "https:"), "--retries", "0")
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and line.startswith("error: the proxy in HTTPS_PROXY did not pass the request on to LLM "
                                         f"endpoint {server.host} (501 "), err
    assert "unset the variable to connect directly" in line and "check --base-url" not in line
    from vipcli.symptoms.llm import proxy_variables

    assert proxy_variables() == "HTTPS_PROXY, ALL_PROXY"  # HTTP_PROXY is not set: not named
    assert "bug in vip" not in err and "Pw9hunter2" not in err


def test_a_proxy_that_cannot_be_reached_is_named_not_the_endpoint(capsys, env, server, monkeypatch):
    """HTTPS_PROXY at a dead address read "cannot reach LLM endpoint HOST ... check --base-url": the
    endpoint was never tried. A host NO_PROXY names still goes direct, and is blamed when it is down."""
    monkeypatch.setenv("HTTPS_PROXY", "http://bob:Pw9hunter2@127.0.0.1:9")  # port 9 (discard): nothing listens
    monkeypatch.setenv("NO_PROXY", "")
    code, _, err = generate_at(capsys, server.url.replace("http:", "https:"), "--retries", "0")
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and line.startswith(f"error: cannot reach the proxy in HTTPS_PROXY (127.0.0.1:9) on the way to "
                                         f"LLM endpoint {server.host}: connection refused"), err
    assert "unset the variable" in line and "Pw9hunter2" not in err and "bob" not in err and server.requests == []
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    code, _, err = generate_at(capsys, "https://127.0.0.1:9/v1", "--retries", "0")
    assert code == 1 and "error: cannot reach LLM endpoint 127.0.0.1:9: connection refused" in err, err


def test_https_to_a_plain_http_server_says_so_not_connection_refused(capsys, env, server, monkeypatch):
    """https:// to a server that speaks plain http (vLLM, Ollama, llama.cpp serve http) read "cannot reach
    LLM endpoint ...: connection refused (... or that the local server is running)" while it was running:
    every TLS failure was called a refused connection."""
    for variable in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    code, _, err = generate_at(capsys, server.url.replace("http:", "https:"), "--retries", "0")
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and line.startswith(f"error: cannot reach LLM endpoint {server.host}: it answers plain http, "
                                         "not https"), err
    assert f"--base-url {server.url}" in line and "refused" not in line and "running" not in line


@pytest.mark.parametrize("bad, position", [("\u2019", 12), ("\n", 12), ("\u00a0", 12), ("\x7f", 12)])
def test_a_key_with_a_character_no_header_can_carry_is_one_clear_line(capsys, env, server, bad, position,
                                                                         monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY[:11] + bad + KEY[11:])
    code, out, err = generate(capsys, server)
    assert code == 1 and server.requests == [] and err.count("error:") == 1
    assert (f"$OPENAI_API_KEY holds a character that cannot be sent in an HTTP header (position {position})"
            in err) and "paste the key again" in err and "bug in vip" not in err
    assert leaked(out + err) == []


# --- --timeout is a deadline for the whole request ------------------------------------------------


def test_a_server_dripping_one_byte_at_a_time_is_cut_at_the_deadline(capsys, env, server):
    server.answer(BULLETS, trickle_s=0.05)  # about 400 bytes: 20 s at this pace
    started = time.monotonic()
    code, _, err = generate(capsys, server, "--timeout", "1", "--retries", "0")
    elapsed = time.monotonic() - started
    assert code == 1 and f"LLM endpoint {server.host} did not answer within 1 s (1 try)" in err
    assert elapsed < 3.0, elapsed
    assert not Path("melanoma.yaml").exists()


def test_the_deadline_holds_for_every_retry(capsys, env, server):
    server.answer(BULLETS, trickle_s=0.05, forever=True)
    started = time.monotonic()
    code, _, err = generate(capsys, server, "--timeout", "0.5", "--retries", "2")
    assert code == 1 and "did not answer within 0.5 s (3 tries)" in err
    assert time.monotonic() - started < 4.0 and len(server.requests) == 3


# --- answers over 1 MB are refused ----------------------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False])
def test_an_answer_over_1_mb_is_refused(capsys, env, server, tmp_path, declared):
    server.answer(BULLETS + "\n- " + "big " * 600_000, no_length=not declared)  # 2.4 MB
    code, out, err = generate(capsys, server)
    assert code == 1 and "sent an answer of more than 1 MB" in err and "refusing it" in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    assert not Path("melanoma.yaml").exists() and not (tmp_path / "cache" / "llm").exists()


def test_an_oversized_answer_cached_by_an_older_vip_is_asked_again(capsys, env, server, tmp_path):
    server.answer(BULLETS).answer(BULLETS)
    assert generate(capsys, server)[0] == 0
    [entry] = (tmp_path / "cache" / "llm").glob("*.json")
    entry.write_text(json.dumps({"answer": BULLETS + "\n- " + "big " * 600_000, "model": "gpt-4o"}))
    code, _, err = generate(capsys, server, "--force")
    assert code == 0 and len(server.requests) == 2 and Path("melanoma.yaml").stat().st_size < 10_000, err


def test_a_large_but_sane_answer_is_accepted(capsys, env, server):
    server.answer(BULLETS + "\n" + "\n".join(f"- Finding number {i} in plain words" for i in range(5000)))
    code, _, err = generate(capsys, server)
    assert code == 0, err


# --- the pack file: a name, a writable place ------------------------------------------------------------


def test_disease_dot_dot_writes_no_hidden_file(capsys, env, server):
    code, _, err = generate(capsys, server, "--disease", "..")
    assert code == 2 and "--disease '..' has no letters or digits" in err
    assert os.listdir(".") == [] and server.requests == []


def test_a_full_pack_folder_fails_before_any_llm_call(capsys, env, server, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30, 0))
    code, _, err = generate(capsys, server, "--out", "packs/melanoma.yaml")
    assert code == 1 and "--out packs/melanoma.yaml: the disk holding" in err and "is nearly full" in err
    assert server.requests == []


def test_a_read_only_pack_folder_fails_before_any_llm_call(capsys, env, server, tmp_path):
    from conftest import read_only_folder

    locked = tmp_path / "locked"
    read_only_folder(locked)
    code, _, err = generate(capsys, server, "--out", locked / "melanoma.yaml")
    assert code == 1 and f"cannot write to {locked} (permission denied)" in err and server.requests == []


@pytest.mark.parametrize("status", [200, 500])
def test_a_proxy_password_echoed_by_the_proxy_is_never_printed_or_written(capsys, env, server, monkeypatch, tmp_path,
                                                                            status):
    """The proxy's user name and password (HTTP_PROXY=http://user:password@proxy) go to the proxy as a
    Proxy-Authorization header; an error body or an answer that echoed it printed its base64 as it came."""
    import base64

    password = "Prx7pw-Hq2Lm9Zt4Vb"
    monkeypatch.setenv("HTTP_PROXY", f"http://proxyuser:{password}@{server.host}")  # the server is its own proxy
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("no_proxy", "")
    if status == 200:
        server.answer(BULLETS + "\n- Proxy said {PROXY_AUTH}", echo_auth=True)
    else:
        server.fail(500, "proxy got {PROXY_AUTH}", echo_auth=True)
    code, out, err = generate(capsys, server, "--retries", "0", "--n", "6")
    sent = server.requests[0]["headers"]["Proxy-Authorization"]
    assert sent == "Basic " + base64.b64encode(f"proxyuser:{password}".encode()).decode()
    assert code == (0 if status == 200 else 1) and "[redacted]" in out + err, err
    written = out + err + everything_written(tmp_path)
    assert leaked(written, password) == [] and leaked(written, sent[6:-4]) == []


@pytest.mark.parametrize("location, named", [
    ("http://127.0.0.1:9/v1/chat/completions?api-key=Qk8sLm2Vx7Wp", "a redirect to http://127.0.0.1:9;"),
    ("https://other.example:8443/v1/chat/completions", "a redirect to https://other.example:8443;"),
    ("/v2/chat/completions", "a redirect to another path of the same server;"),
])
def test_a_redirect_is_not_followed_and_is_one_line_naming_where_it_points(capsys, env, server, tmp_path, location,
                                                                          named):
    """A 301/302 read "did not return a chat-completions answer (is --base-url an OpenAI-compatible root?)";
    following it would take the key to wherever the server points."""
    server.raw({"moved": "{AUTH}"}, status=302, headers={"Location": location}, echo_auth=True)
    code, out, err = generate(capsys, server, "--retries", "0")
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and line.startswith(f"error: LLM endpoint {server.host} answered HTTP 302, {named}"), err
    assert "does not follow redirects" in line and "as --base-url" in line and "Qk8sLm2Vx7Wp" not in err
    assert len(server.requests) == 1 and leaked(out + err + everything_written(tmp_path)) == []
    assert not Path("melanoma.yaml").exists()


def test_an_answer_with_no_choices_is_one_line_saying_so(capsys, env, server):
    """`"choices": []` (a content filter, an overloaded server) read as a server that is not chat-completions."""
    server.raw({"id": "x", "object": "chat.completion", "choices": []})
    code, _, err = generate(capsys, server, "--retries", "0")
    assert code == 1 and "answered with an empty list of choices" in err and "OpenAI-compatible root" not in err
    assert not Path("melanoma.yaml").exists()


def test_a_vip_debug_traceback_shows_no_api_key_or_proxy_password_of_the_environment(monkeypatch, capsys):
    """VIP_DEBUG=1 lets a traceback through, masked for the Hugging Face token only: an LLM key or a proxy
    password that a server echoed into an exception's text was printed as it was."""
    from vipcli.cli import main as entry

    key, password = "sk-zq81-Wvx07-m4", "Pr0xyPassw0rd77"
    monkeypatch.setenv("VIP_DEBUG", "1")
    monkeypatch.setenv("MY_LLM_API_KEY", key)
    monkeypatch.setenv("HTTPS_PROXY", f"http://carol:{password}@127.0.0.1:9")
    echoed = RuntimeError(f"server said: bad key {key} via carol:{password}")
    monkeypatch.setattr(entry, "main", lambda: (_ for _ in ()).throw(echoed))
    with pytest.raises(SystemExit) as exited:
        entry.run()
    err = capsys.readouterr().err
    assert exited.value.code == 1 and "Traceback" in err and "server said: bad key [redacted]" in err, err
    assert key not in err and password not in err
