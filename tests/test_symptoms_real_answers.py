"""`vip symptoms generate` against answers as real servers send them (#31): a server that only streams, odd
message shapes, an error sent with HTTP 200, wordings of one symptom, another provider's endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import symptoms_workspace
from vipcli.cli.main import main
from vipcli.packs import load_pack

KEY = "sk-proj-Zq8Xw3Lm5Rt7Yv2Nb4Kc6Hd9Jf1Gs0Pa"
FOUR = ["- Asymmetric shape\n", "- Jagged edges\n- Several", " colors\n", "- Dark dots"]


@pytest.fixture
def env(tmp_path, monkeypatch):
    symptoms_workspace(tmp_path, monkeypatch, KEY)


def generate(capsys, url: str, *args: str) -> tuple[int, str, str]:
    code = main(["symptoms", "generate", "--base-url", url, "--backoff", "0.01", "--timeout", "5", "--disease",
                 "melanoma", "--modality", "dermoscopic images", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


def stream(pieces: list[str], finish: str = "stop", extra: str = "") -> str:
    """An event stream of chat.completion.chunk events as OpenAI, vLLM and Ollama send for `stream: true`."""
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m"}
    events = [{**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                     "finish_reason": None}]}]
    events += [{**chunk, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
               for piece in pieces]
    events.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    return "".join(f"data: {json.dumps(event)}\n\n" for event in events) + extra + "data: [DONE]\n\n"


# --- a server that answers only as a stream -----------------------------------------------------


def test_a_server_that_only_streams_gives_a_pack(capsys, env, llm_server):
    """A gateway that streams whatever it is asked was "did not return a chat-completions answer (is --base-url an
    OpenAI-compatible root ...?)", though --base-url was right."""
    llm_server.send_text(stream(FOUR))
    code, out, err = generate(capsys, llm_server.url)
    assert code == 0, err
    assert load_pack("melanoma.yaml").symptoms == ("Asymmetric shape", "Jagged edges", "Several colors", "Dark dots")
    code, out, err = generate(capsys, llm_server.url, "--force")  # cached as any answer
    assert code == 0 and "answer from cache" in err and len(llm_server.requests) == 1


def test_a_stream_cut_at_the_output_limit_or_ending_in_an_error_says_so(capsys, env, llm_server):
    llm_server.send_text(stream(FOUR + ["\n- Blue-white ve"], finish="length"))
    code, out, err = generate(capsys, llm_server.url)
    assert code == 0, err
    assert "'Blue-white ve' (cut off at the model's output limit)" in err
    llm_server.send_text(stream(FOUR[:1], extra=f"data: {json.dumps({'error': {'message': 'model overloaded'}})}\n\n"))
    code, out, err = generate(capsys, llm_server.url, "--force", "--no-cache")
    assert code == 1 and last_line(err) == (
        f"error: LLM endpoint {llm_server.host} answered HTTP 200 with an error in place of an answer: model "
        "overloaded (check --model and the server's settings against what it says)")


# --- odd shapes of a message: one line, never "a bug in vip" ----------------------------------------


@pytest.mark.parametrize("choice, expected", [
    ({"message": None, "finish_reason": "stop"}, "error: the stage 1 answer for 'melanoma' is empty"),
    ({"message": "- Dark dots", "finish_reason": "stop"}, "did not return a chat-completions answer"),
    ({"message": {"role": "assistant", "content": [{"type": "text", "text": None},
                                                   {"type": "text", "text": "".join(FOUR)}]}}, None),
    ({"message": {"role": "assistant", "content": None, "refusal": [{"type": "text", "text": "I can't help"}]}},
     "is a refusal"),
], ids=["message-null", "message-a-string", "a-null-text-part", "refusal-as-parts"])
def test_odd_message_shapes_give_a_pack_or_one_line(capsys, env, llm_server, choice, expected):
    """A `"message": null` or a text part of `"text": null` was "unexpected AttributeError ... (this is a bug in
    vip ...)"."""
    llm_server.raw({"id": "x", "object": "chat.completion", "choices": [{"index": 0, **choice}]})
    code, out, err = generate(capsys, llm_server.url)
    assert "unexpected" not in err and "bug in vip" not in err
    if expected is None:
        assert code == 0 and len(load_pack("melanoma.yaml").symptoms) == 4
    else:
        assert code == 1 and expected in last_line(err) and not Path("melanoma.yaml").exists()


# --- an error sent with HTTP 200 ------------------------------------------------------------------


def test_an_error_sent_with_http_200_is_retried_when_it_says_try_again(capsys, env, llm_server):
    """OpenRouter sends a provider's failure as HTTP 200 with `{"error": {"code": 429, ...}}`: it was "did not return
    a chat-completions answer (is --base-url an OpenAI-compatible root ...?)"; it is waited out as a 429 is."""
    llm_server.raw({"error": {"message": "Rate limit exceeded upstream", "code": 429}}).answer("".join(FOUR))
    code, out, err = generate(capsys, llm_server.url)
    assert code == 0, err
    assert f"{llm_server.host} answered an error in place of an answer (code 429); asking again" in err
    llm_server.raw({"error": {"message": "Provider returned error", "code": 502}}, forever=True)
    code, out, err = generate(capsys, llm_server.url, "--force", "--no-cache", "--retries", "1")
    assert code == 1 and last_line(err) == (
        f"error: LLM endpoint {llm_server.host} answered HTTP 200 with an error in place of an answer (code 502) after 2 "
        "tries: Provider returned error (try again later (answers already received are cached), or another --model)")


def test_an_error_sent_with_http_200_never_shows_the_key(capsys, env, llm_server, tmp_path):
    llm_server.raw({"error": {"message": "bad credentials: {AUTH}", "code": "invalid_api_key"}}, echo_auth=True)
    code, out, err = generate(capsys, llm_server.url)
    assert code == 1 and "bad credentials: Bearer sk-[redacted]" in last_line(err)
    written = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert KEY[8:14] not in out + err + written


def test_a_web_page_in_place_of_an_answer_is_named(capsys, env, llm_server):
    llm_server.send_text("<html><body>Please sign in</body></html>", content_type="text/html; charset=utf-8")
    code, out, err = generate(capsys, llm_server.url)
    assert code == 1 and last_line(err) == (
        f"error: LLM endpoint {llm_server.host} did not return a chat-completions answer (it sent a text/html page, not "
        "JSON) (is --base-url an OpenAI-compatible root such as http://localhost:8000/v1?)")


# --- one symptom in several wordings ----------------------------------------------------------------


def test_one_symptom_in_other_words_takes_one_place_in_the_pack(capsys, env, llm_server):
    """"Asymmetric shape", "Asymmetrical shape" and "The shape is asymmetric" took three of the four places."""
    llm_server.answer("- Asymmetric shape\n- Asymmetrical shape\n- The shape is asymmetric\n- Jagged edges\n"
                      "- Dark dots\n- Small dark dot\n- Dark dot\n- Symmetric halo\n- Larger than 6 mm\n- < 6 mm\n"
                      "- > 6 mm")
    code, out, err = generate(capsys, llm_server.url, "--n", "8")
    assert code == 0, err
    assert load_pack("melanoma.yaml").symptoms == ("Asymmetric shape", "Jagged edges", "Dark dots", "Small dark dot",
                                                   "Symmetric halo", "Larger than 6 mm", "< 6 mm", "> 6 mm")
    assert ("'Asymmetrical shape' (repeats 'Asymmetric shape' in other words), 'The shape is asymmetric' (repeats "
            "'Asymmetric shape' in other words), 'Dark dot' (repeats 'Dark dots' in other words)") in err


def test_the_same_words_in_another_order_can_be_another_symptom(capsys, env, llm_server):
    """Which adjective goes with which noun is part of a symptom: a dark center with light edges is not a light
    center with dark edges, though the words are the same."""
    llm_server.answer("- Dark center with light edges\n- Light center with dark edges\n- White lines on a brown "
                      "background\n- Brown lines on a white background\n- Jagged edges")
    code, out, err = generate(capsys, llm_server.url, "--n", "5")
    assert code == 0, err
    assert load_pack("melanoma.yaml").symptoms == ("Dark center with light edges", "Light center with dark edges",
                                                   "White lines on a brown background",
                                                   "Brown lines on a white background", "Jagged edges")


def test_one_symptom_in_synonyms_takes_one_place_in_the_pack(capsys, env, llm_server):
    """"Irregular borders" and "Irregular edges", "Blue-white veil" and "Bluish-white veil", "Well-defined margins"
    and "Sharp borders" each took two places of the pack."""
    llm_server.answer("- Irregular borders\n- Irregular edges\n- Blue-white veil\n- Bluish-white veil\n"
                      "- Sharp borders\n- Well-defined margins\n- Uneven colour\n- Irregular color\n- Dark dots")
    code, out, err = generate(capsys, llm_server.url, "--n", "5")
    assert code == 0, err
    assert load_pack("melanoma.yaml").symptoms == ("Irregular borders", "Blue-white veil", "Sharp borders",
                                                   "Uneven colour", "Dark dots")
    assert ("'Irregular edges' (repeats 'Irregular borders' in other words), 'Bluish-white veil' (repeats "
            "'Blue-white veil' in other words), 'Well-defined margins' (repeats 'Sharp borders' in other words), "
            "'Irregular color' (repeats 'Uneven colour' in other words)") in err


def test_a_number_in_words_and_in_digits_is_one_symptom(capsys, env, llm_server):
    """"Larger than six mm" and "Larger than 6 mm", "More than twelve dots" and "More than 12 dots" each took two
    places of the pack: a number word was a content word, and words above ten were no number."""
    llm_server.answer("- Larger than 6 mm\n- Larger than six mm\n- More than twelve dots\n- More than 12 dots\n"
                      "- Seventeen dots\n- 7 dots\n- Dark dots")
    code, out, err = generate(capsys, llm_server.url, "--n", "5")
    assert code == 0, err
    assert load_pack("melanoma.yaml").symptoms == ("Larger than 6 mm", "More than twelve dots", "Seventeen dots",
                                                   "7 dots", "Dark dots")
    assert ("'Larger than six mm' (repeats 'Larger than 6 mm' in other words), 'More than 12 dots' (repeats 'More "
            "than twelve dots' in other words)") in err


def test_symptoms_that_differ_are_never_merged_as_synonyms(capsys, env, llm_server):
    """A false merge loses a symptom: opposites, another kind or degree of a feature, another color, the same
    words in another order, and another number stay apart, whichever synonym each uses. "Larger than 8 mm" was
    removed as a repeat of "Larger than 6 mm", and "Two dark dots" of "One dark dot" (a one-digit number or a
    number word is no content word)."""
    different = ["Irregular borders", "Regular edges", "Jagged edges", "Sharp borders", "Ill-defined margins",
                 "Bluish veil", "Whitish veil", "Blue dots", "Blue globules", "Large dark blotch", "Small dark blotch",
                 "Dark center with light edges", "Light center with dark borders", "Not well-defined borders",
                 "Larger than 6 mm", "Larger than 8 mm", "One dark dot", "Two dark dots"]
    llm_server.answer("".join(f"- {symptom}\n" for symptom in different))
    code, out, err = generate(capsys, llm_server.url, "--n", str(len(different)))
    assert code == 0, err
    assert load_pack("melanoma.yaml").symptoms == tuple(different)
    assert "in other words" not in err


# --- another provider's endpoint never gets $OPENAI_API_KEY -------------------------------------------


@pytest.mark.parametrize("url, provider, variable", [
    ("https://api.anthropic.com/v1", "Anthropic", "ANTHROPIC_API_KEY"),
    ("https://openrouter.ai/api/v1", "OpenRouter", "OPENROUTER_API_KEY"),
    ("https://generativelanguage.googleapis.com/v1beta/openai", "Google Gemini", "GEMINI_API_KEY"),
])
def test_the_openai_key_is_never_sent_to_another_provider_by_default(capsys, env, monkeypatch, url, provider,
                                                                     variable):
    """`--base-url https://api.anthropic.com/v1` without --api-key-env sent $OPENAI_API_KEY to Anthropic."""
    import httpx

    def no_request(*args, **kwargs):
        raise AssertionError("a request was made")

    monkeypatch.setattr(httpx.AsyncClient, "stream", no_request)
    host = url.split("/")[2]
    code, out, err = generate(capsys, url)
    assert code == 2 and last_line(err) == (
        f"error: --base-url {host} is {provider}'s: $OPENAI_API_KEY, which vip reads by default, would be sent to it, "
        f"and it is meant for OpenAI (export {variable}=... and pass --api-key-env {variable}, or --api-key-env "
        f"OPENAI_API_KEY if that variable does hold your {provider} key)")
    monkeypatch.delenv("OPENAI_API_KEY")
    code, out, err = generate(capsys, url)
    assert code == 2 and last_line(err) == (
        f"error: --base-url {host} is {provider}'s, which needs its own key: name the variable that holds it (export "
        f"{variable}=... and pass --api-key-env {variable})")
    assert KEY[8:14] not in out + err


def test_a_key_in_the_query_of_the_url_that_is_refused_is_named_as_such(capsys, env, llm_server, monkeypatch):
    """A gateway key in `--base-url ...?api-key=KEY` answered 401 was "needs an API key (answered HTTP 401) but
    $OPENAI_API_KEY is not set (export OPENAI_API_KEY=...)", though a key had been sent."""
    monkeypatch.delenv("OPENAI_API_KEY")
    llm_server.fail(401, "invalid subscription key " + KEY)
    code, out, err = generate(capsys, llm_server.url + "?api-key=" + KEY)
    assert code == 1 and last_line(err) == (
        f"error: LLM endpoint {llm_server.host} rejected the key in the query of --base-url with HTTP 401 (check that "
        "key, or export it in OPENAI_API_KEY instead if the server takes a Bearer key)")
    assert KEY[8:14] not in out + err
