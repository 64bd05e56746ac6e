"""`vip symptoms generate` end to end against a real local chat-completions server (offline)."""

from __future__ import annotations

import base64
import io
import json
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from vipcli.cli.main import main
from vipcli.packs import load_pack, symptoms_for_classes

try:
    from conftest import overridden, read_only_folder, symptoms_workspace
    from llm_server import closed_port_url
except ImportError:  # tests/ imported as a package
    from tests.conftest import overridden, read_only_folder, symptoms_workspace
    from tests.llm_server import closed_port_url

STAGE1 = (
    "I am going to use CLIP, a vision-language model, to detect melanoma in dermoscopic images. "
    "What are useful medical visual features for diagnosing melanoma? List them in bullet points, "
    "in plain words that CLIP understands. Avoid words such as melanoma. Answer in English."
)
BULLETS = """Here are some useful visual features for detecting melanoma in dermoscopic images:

- **Asymmetry**: The spot is not the same on both sides.
- **Irregular borders**: Edges are blurry, jagged or notched.
- **Multiple colors**: Shades of brown, black, blue, red or white.
- **Dark dots**: Small dark dots or globules inside the spot.
- **Size**: Often wider than six millimeters.

These features can help CLIP tell suspicious spots apart."""
NUMBERED = """1. Larger than six millimeters
2. Asymmetric shape
3. Irregular, jagged edges
4. Several colors such as brown, black and blue
5. Small dark dots
6. Blue-white veil"""
STAGE2 = """### Color
- Shades of brown and black
- Blue-white areas
### Shape
- Asymmetric shape
- Irregular, jagged borders
### Texture
- Small dark dots and globules
- Rough surface"""


@pytest.fixture
def vip_env(tmp_path, monkeypatch):
    """Cache in tmp_path, cwd tmp_path/work, a wide console and a known fake key; returns the key."""
    key = "sk-test-SECRET-0123456789abcdef"
    symptoms_workspace(tmp_path, monkeypatch, key)
    return key


def vip(capsys, *args: str) -> tuple[int, str, str]:
    """Run `vip ARGS` through the public entry point; returns (exit code, stdout, stderr)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def generate(capsys, server, *args: str) -> tuple[int, str, str]:
    """`vip symptoms generate` against `server`, with fast retries."""
    base = ["symptoms", "generate", "--base-url", getattr(server, "url", server), "--backoff", "0.01", "--timeout", "5"]
    return vip(capsys, *overridden(base, args))  # a test's own --backoff/--timeout replaces the fast default


def melanoma(capsys, server, *args: str) -> tuple[int, str, str]:
    return generate(capsys, server, "--disease", "melanoma", "--modality", "dermoscopic images", *args)


def write_images(folder: Path, count: int, broken: int = 0) -> Path:
    """`count` tiny PNGs (mixed modes, one 16-bit) and `broken` unreadable .png files."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        mode = ("RGB", "L", "I;16")[i % 3]
        Image.new(mode, (12 + i, 10), color=(i * 9 % 256, 80, 200) if mode == "RGB" else i * 9).save(
            folder / f"img{i:02d}.png"
        )
    for i in range(broken):
        (folder / f"broken{i}.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("not an image either")
    return folder


# --- answers in the shapes real models give -------------------------------------------------


@pytest.mark.parametrize(
    "answer, expected",
    [
        (BULLETS, "Asymmetry: The spot is not the same on both sides"),
        (NUMBERED, "Larger than six millimeters"),
        ("Asymmetric shape\nIrregular edges\nMany colors\nDark dots\n", "Asymmetric shape"),
        ('```json\n["Asymmetric shape", "Irregular edges", "Many colors", "Dark dots"]\n```', "Asymmetric shape"),
        (
            '{"visual_features": ["Asymmetric shape", "Irregular edges", "Many colors", "Dark dots"]}',
            "Asymmetric shape",
        ),
    ],
    ids=["bullets", "numbered", "prose-lines", "json-array", "json-object"],
)
def test_answer_shapes_give_a_valid_pack_of_n(capsys, vip_env, llm_server, answer, expected):
    llm_server.answer(answer)
    code, out, err = melanoma(capsys, llm_server)
    assert code == 0, err
    pack = load_pack("melanoma.yaml")
    assert len(pack.symptoms) == 4 and pack.symptoms[0] == expected
    assert "wrote melanoma.yaml: 4 symptoms" in out and expected in out


def test_pack_records_provenance_and_uses_the_papers_prompt(capsys, vip_env, llm_server):
    llm_server.answer(BULLETS)
    assert melanoma(capsys, llm_server, "--model", "llama3.1:8b", "--n", "3")[0] == 0
    document = yaml.safe_load(Path("melanoma.yaml").read_text())
    assert document["name"] == "melanoma" and document["aliases"] == [] and document["modality"] == "dermoscopic images"
    assert len(document["symptoms"]) == 3
    source = document["source"]
    assert source["kind"] == "llm" and source["model"] == "llama3.1:8b"
    assert source["endpoint_host"] == llm_server.host
    assert source["prompts"]["stage1"] == STAGE1 and source["raw_answers"]["stage1"] == BULLETS
    datetime.fromisoformat(source["date"])
    request = llm_server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "llama3.1:8b"
    assert request["body"]["messages"] == [{"role": "user", "content": STAGE1}]


def test_key_only_in_authorization_header_never_in_pack_output_or_cache(capsys, vip_env, llm_server, tmp_path):
    key = vip_env
    llm_server.answer(BULLETS)
    code, out, err = melanoma(capsys, llm_server)
    assert code == 0
    request = llm_server.requests[0]
    assert request["headers"]["Authorization"] == f"Bearer {key}"
    assert key not in request["raw"] and key not in request["path"]
    assert key not in Path("melanoma.yaml").read_text() and key not in out + err
    for cached in (tmp_path / "cache" / "llm").iterdir():
        assert key not in cached.read_text()


def test_generated_pack_is_accepted_by_train_symptom_lookup(capsys, vip_env, llm_server):
    llm_server.answer(NUMBERED)
    assert melanoma(capsys, llm_server, "--out", "packs/melanoma.yaml")[0] == 0
    expected = [
        "Larger than six millimeters",
        "Asymmetric shape",
        "Irregular, jagged edges",
        "Several colors such as brown, black and blue",
    ]
    assert symptoms_for_classes(["melanoma"], ["packs"]) == {"melanoma": expected}
    assert symptoms_for_classes(["MELANOMA"], ["packs/melanoma.yaml"]) == {"MELANOMA": expected}


def test_modality_defaults_to_the_shipped_pack_and_is_required_otherwise(capsys, vip_env, llm_server):
    llm_server.answer(NUMBERED)
    assert generate(capsys, llm_server, "--disease", "tb")[0] == 0
    assert "in chest X-ray images" in llm_server.requests[0]["body"]["messages"][0]["content"]
    code, _, err = generate(capsys, llm_server, "--disease", "lichen planus")
    assert code == 2 and "--modality is needed for 'lichen planus'" in err


# --- unusable answers --------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, message",
    [
        (
            "I'm sorry, but I can't help with diagnosing medical conditions.",
            "the stage 1 answer for 'melanoma' is a refusal",
        ),
        ("", "the stage 1 answer for 'melanoma' is empty"),
        ("Melanoma usually looks asymmetric, with several colors and blurry edges.", "is not a list"),
        (
            "- Melanoma has dark spots\n- Asymmetric shape\n- Signs of melanoma\n- asymmetric shape.",
            "gave 1 usable symptom, fewer than --n 4",
        ),
    ],
    ids=["refusal", "empty", "prose", "names-disease-and-repeats"],
)
def test_unusable_answer_is_one_clear_line_and_no_pack(capsys, vip_env, llm_server, answer, message):
    llm_server.answer(answer)
    code, out, err = melanoma(capsys, llm_server)
    assert code == 1 and message in err
    assert err.count("error:") == 1 and err.splitlines()[-1].startswith("error: ") and "Traceback" not in err
    assert not Path("melanoma.yaml").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--timeout", "0", "--timeout 0.0: must be a positive number of seconds"),
    ("--timeout", "-5", "--timeout -5.0: must be a positive number of seconds"),
    ("--retries", "-1", "--retries -1: must be 0 or more"),
    ("--agree-threshold", "5", "--agree-threshold 5.0: must be between 0 and 1"),
    ("--agree-threshold", "nan", "--agree-threshold nan: must be between 0 and 1"),
])
def test_numbers_that_cannot_work_are_refused_before_any_request(capsys, vip_env, llm_server, option, value, message):
    code, _, err = generate(capsys, llm_server, "--disease", "melanoma", option, value)
    assert code == 2 and f"error: {message}" in err and llm_server.requests == []


@pytest.mark.parametrize("options, message", [
    (["--judge", "llm"], "--judge is for stage 2 (the images), which runs only with --images, or with --data without "
                         "--text-only (add --images FOLDER, or leave out --judge)"),
    (["--agree-threshold", "0.5", "--seed", "3"], "--agree-threshold and --seed are for stage 2 (the images)"),
    (["--seed", "0"], "--seed is for stage 2 (the images)"),
])
def test_stage_2_options_without_images_are_refused_before_any_request(capsys, vip_env, llm_server, options, message):
    """Without --images stage 2 never runs: `--judge llm` (or a threshold, or a seed) was ignored without a word, and
    a text-only pack written as if the images had been judged."""
    llm_server.answer(BULLETS)
    code, _, err = melanoma(capsys, llm_server, *options)
    assert code == 2 and err.startswith(f"error: {message}") and len(err.splitlines()) == 1, err
    assert llm_server.requests == [] and not Path("melanoma.yaml").exists()


def test_a_threshold_beside_the_llm_judge_is_refused_before_any_request(capsys, vip_env, llm_server, tmp_path):
    """The LLM judge reads no threshold: `--judge llm --agree-threshold 0.9` judged as if 0.9 were not given."""
    folder = write_images(tmp_path / "imgs", 16)
    code, _, err = melanoma(capsys, llm_server, "--images", str(folder), "--judge", "llm", "--agree-threshold", "0.9")
    assert code == 2 and err.startswith("error: --agree-threshold is the overlap judge's: with --judge llm the model "
                                        "decides") and llm_server.requests == [], err


def test_stage_2_options_with_data_and_text_only_are_refused_before_any_request(capsys, vip_env, llm_server, tmp_path):
    data = tmp_path / "data"
    write_images(data / "lichen_planus", 20)
    code, _, err = generate(capsys, llm_server, "--data", str(data), "--modality", "dermoscopic images", "--text-only",
                            "--judge", "llm")
    assert code == 2 and err.startswith("error: --judge is for stage 2") and "(drop --text-only, or leave out --judge)" in err
    assert llm_server.requests == [], err


@pytest.mark.parametrize("diseases, message", [
    (["", ], "--disease '': an empty class name (name the class, e.g. --disease melanoma)"),
    (["melanoma", "  "], "--disease '  ': an empty class name"),
    (["melanoma", "Melanoma"], "--disease 'Melanoma' is given twice (as 'melanoma') (give each disease once)"),
])
def test_a_blank_or_repeated_disease_is_refused_before_any_request(capsys, vip_env, llm_server, diseases, message):
    args = [arg for name in diseases for arg in ("--disease", name)]
    code, _, err = generate(capsys, llm_server, *args, "--out", "packs.yaml" if len(diseases) == 1 else ".")
    assert code == 2 and f"error: {message}" in err and llm_server.requests == [] and list(Path(".").iterdir()) == []


def test_disease_naming_items_are_removed_and_shown(capsys, vip_env, llm_server):
    llm_server.answer(
        "- Melanoma has dark spots\n- Asymmetric shape\n- Asymmetric shape\n- Many colors\n- Typical melanoma pattern"
    )
    code, out, err = melanoma(capsys, llm_server, "--n", "2")
    assert code == 0
    assert load_pack("melanoma.yaml").symptoms == ("Asymmetric shape", "Many colors")
    assert "'Melanoma has dark spots' (names the disease)" in err and "'Asymmetric shape' (repeated)" in err


# --- endpoint failures -------------------------------------------------------------------


def test_429_is_retried_honoring_retry_after(capsys, vip_env, llm_server):
    llm_server.fail(429, "Rate limit reached", headers={"Retry-After": "0.2"}).answer(BULLETS)
    start = time.monotonic()
    code, _, err = melanoma(capsys, llm_server, "--backoff", "30")  # Retry-After wins over the backoff
    assert code == 0, err
    assert time.monotonic() - start < 5
    assert len(llm_server.requests) == 2 and Path("melanoma.yaml").exists()
    # the wait is told, or a minute of Retry-After looks like a hang
    assert (f"melanoma, stage 1 (text): {llm_server.host} answered HTTP 429 (rate limited); asking again in 0.2 s "
            "(try 2 of 5)") in err.splitlines()


def test_429_forever_gives_up_with_a_clear_message(capsys, vip_env, llm_server):
    llm_server.fail(429, "Rate limit reached for gpt-4o", forever=True)
    code, _, err = melanoma(capsys, llm_server, "--retries", "2")
    assert code == 1 and len(llm_server.requests) == 3
    assert f"LLM endpoint {llm_server.host} kept rate-limiting (HTTP 429) after 3 tries" in err


def test_500_is_retried_then_reported(capsys, vip_env, llm_server):
    llm_server.fail(500, "internal error", forever=True)
    code, _, err = melanoma(capsys, llm_server, "--retries", "1")
    assert code == 1 and len(llm_server.requests) == 2 and "failed with HTTP 500 after 2 tries" in err


TEMPERATURE_REFUSAL = {"error": {"message": "Unsupported value: 'temperature' does not support 0 with this model. "
                                            "Only the default (1) value is supported.", "type": "invalid_request_error",
                                 "param": "temperature", "code": "unsupported_value"}}


def test_a_temperature_refusal_is_remembered_for_the_rest_of_the_run_only(capsys, vip_env, llm_server, tmp_path):
    """Every question of a run was first sent with `temperature: 0` to a model that had already refused it: one
    refused request per question (two per class with --images, and one per class of a --data run)."""
    nevus = "- Symmetric shape\n- Even brown color\n- Smooth, clear edges\n- Regular net pattern"
    llm_server.raw(TEMPERATURE_REFUSAL, status=400).answer(BULLETS).answer(nevus)
    code, _, err = generate(capsys, llm_server, "-d", "melanoma", "-d", "nevus", "--out", "packs", "--model", "gpt-5")
    assert code == 0, err
    assert [r["body"].get("temperature", "none") for r in llm_server.requests] == [0.0, "none", "none"]
    assert (f"nevus, stage 1 (text): asking gpt-5 at {llm_server.host} without a temperature (it refused one earlier "
            "in this run)") in err.splitlines()
    # stage 2 of the same class; and a new run asks with one again (nothing of the refusal is kept on disk)
    llm_server.raw(TEMPERATURE_REFUSAL, status=400).answer(NUMBERED).answer(STAGE2)
    code, _, err = melanoma(capsys, llm_server, "--model", "gpt-5", "--no-cache", "--force",
                            "--images", write_images(tmp_path / "mel", 18))
    assert code == 0, err
    assert [r["body"].get("temperature", "none") for r in llm_server.requests[3:]] == [0.0, "none", "none"]


def test_a_model_that_takes_no_temperature_is_asked_without_one(capsys, vip_env, llm_server):
    """gpt-5, o1 and o3 answer `temperature: 0` with HTTP 400: `vip symptoms generate --model gpt-5` was `refused the
    request (HTTP 400): Unsupported value: 'temperature' ... (with --images the --model must accept images ...)`,
    with no way around it. It asks again without one, says so, records `temperature: null` (the model's own) in the
    pack, and a second run finds that answer in the cache."""
    llm_server.raw(TEMPERATURE_REFUSAL, status=400).answer(BULLETS)
    code, _, err = melanoma(capsys, llm_server, "--model", "gpt-5")
    assert code == 0, err
    assert [r["body"].get("temperature", "none") for r in llm_server.requests] == [0.0, "none"]
    assert (f"melanoma, stage 1 (text): model 'gpt-5' at {llm_server.host} takes no temperature 0, only its own "
            "default: asking again without one (the model's own temperature: its answers can differ from run to "
            "run)") in err.splitlines()
    assert load_pack("melanoma.yaml").source["temperature"] is None
    code, _, err = melanoma(capsys, llm_server, "--model", "gpt-5", "--force")
    assert code == 0 and "answer from cache" in err and len(llm_server.requests) == 2
    # any other 400 is still one error line
    llm_server.fail(400, "Invalid value for 'max_tokens'")
    code, _, err = melanoma(capsys, llm_server, "--model", "gpt-4o", "--force")
    assert code == 1 and "refused the request (HTTP 400): Invalid value for 'max_tokens'" in err


def test_500_then_success(capsys, vip_env, llm_server):
    llm_server.fail(503, "overloaded").answer(BULLETS)
    code, _, err = melanoma(capsys, llm_server)
    assert code == 0 and len(llm_server.requests) == 2
    assert f"melanoma, stage 1 (text): {llm_server.host} answered HTTP 503; asking again in 0.01 s (try 2 of 5)" in err


def test_401_names_the_key_variable_but_never_the_key(capsys, vip_env, llm_server):
    key = vip_env
    llm_server.fail(401, f"Incorrect API key provided: {key}.")
    code, out, err = melanoma(capsys, llm_server)
    assert code == 1 and "rejected the API key in $OPENAI_API_KEY with HTTP 401" in err
    assert key not in out + err and len(llm_server.requests) == 1


def test_custom_key_variable_and_no_key_for_local_servers(capsys, vip_env, llm_server, monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "local-key-42")
    llm_server.answer(BULLETS).answer(BULLETS)
    assert melanoma(capsys, llm_server, "--api-key-env", "MY_LLM_KEY")[0] == 0
    assert llm_server.requests[0]["headers"]["Authorization"] == "Bearer local-key-42"
    monkeypatch.delenv("OPENAI_API_KEY")
    assert melanoma(capsys, llm_server, "--no-cache", "--force")[0] == 0
    assert "Authorization" not in llm_server.requests[1]["headers"]


def test_openai_without_a_key_fails_before_any_request(capsys, vip_env, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    code, _, err = vip(capsys, "symptoms", "generate", "--disease", "melanoma")
    assert code == 1 and "no API key for api.openai.com: $OPENAI_API_KEY is not set" in err
    assert "asking" not in err, err  # no "asking gpt-4o at api.openai.com" line before the error: nothing was asked


def test_openai_without_a_key_stops_several_diseases_at_the_first(capsys, vip_env, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    code, _, err = vip(capsys, "symptoms", "generate", "-d", "lichen planus", "-d", "psoriasis", "--modality",
                       "dermoscopic images")
    assert code == 1 and err.count("error:") == 1, err  # one line, not one per disease and a summary
    assert "no API key for api.openai.com: $OPENAI_API_KEY is not set" in err
    assert "written and complete" not in err and "written so far" not in err  # none was written


def test_404_means_wrong_url_or_model(capsys, vip_env, llm_server):
    llm_server.fail(404, "model 'gpt-5o' not found")
    code, _, err = melanoma(capsys, llm_server, "--model", "gpt-5o")
    assert code == 1 and "answered 404" in err and "model 'gpt-5o' not found" in err and "--base-url" in err


def test_400_detail_is_shown_with_the_key_redacted(capsys, vip_env, llm_server):
    key = vip_env
    llm_server.fail(400, f"bad request from {key}: image_url not supported")
    code, out, err = melanoma(capsys, llm_server)
    assert code == 1 and "refused the request (HTTP 400)" in err and "[redacted]" in err and key not in err


def test_a_400_speaks_of_images_only_when_the_request_carried_them(capsys, vip_env, llm_server, tmp_path):
    """Every 400 said "with --images the --model must accept images", on a text-only question too."""
    llm_server.fail(400, "Invalid value for 'max_tokens'")
    code, _, err = melanoma(capsys, llm_server)
    assert code == 1 and err.splitlines()[-1].endswith(
        "Invalid value for 'max_tokens' (check --model and the server's settings against what it says)")
    llm_server.answer(NUMBERED).fail(400, "this model does not support image input")
    code, _, err = melanoma(capsys, llm_server, "--images", str(write_images(tmp_path / "mel", 16)), "--force")
    assert code == 1 and err.splitlines()[-1].endswith(
        "(with --images the --model must accept images (e.g. gpt-4o, llava, qwen2-vl))")


def test_timeout_is_reported(capsys, vip_env, llm_server):
    llm_server.answer(BULLETS, delay=1.5)
    code, _, err = melanoma(capsys, llm_server, "--timeout", "0.3", "--retries", "0")
    assert code == 1 and f"LLM endpoint {llm_server.host} did not answer within 0.3 s (1 try)" in err


def test_connection_refused(capsys, vip_env):
    url = closed_port_url()
    code, _, err = generate(capsys, url, "--disease", "melanoma", "--modality", "dermoscopic images")
    assert code == 1 and "cannot reach LLM endpoint 127.0.0.1:" in err and ": connection refused" in err


def test_not_a_chat_completions_answer(capsys, vip_env, llm_server):
    llm_server.raw({"object": "list", "data": []})
    code, _, err = melanoma(capsys, llm_server)
    assert code == 1 and "did not return a chat-completions answer" in err


def test_an_empty_model_name_is_a_usage_error_before_any_question(capsys, vip_env, llm_server):
    """`--model ''` (an unset shell variable, `--model "$MODEL"`) was sent to the server as the model's name."""
    code, _, err = melanoma(capsys, llm_server, "--model", "")
    assert code == 2 and [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: --model '': an empty model name (name the model, e.g. --model gpt-4o)"]
    assert not llm_server.requests and not Path("melanoma.yaml").exists()


def test_bad_base_url_is_a_usage_error(capsys, vip_env):
    code, _, err = vip(capsys, "symptoms", "generate", "--disease", "melanoma", "--base-url", "localhost:11434")
    assert code == 2 and "--base-url 'localhost:11434' is not an http(s) URL" in err


# --- files: overwrite, several diseases, cache -------------------------------------------


def test_existing_pack_is_not_overwritten_without_force(capsys, vip_env, llm_server):
    llm_server.answer(BULLETS)
    assert melanoma(capsys, llm_server)[0] == 0
    before = Path("melanoma.yaml").read_text()
    code, _, err = melanoma(capsys, llm_server, "--no-cache")
    assert code == 1 and "melanoma.yaml already exists; not overwriting it (pass --force" in err
    assert len(llm_server.requests) == 1 and Path("melanoma.yaml").read_text() == before
    llm_server.answer(NUMBERED)
    assert melanoma(capsys, llm_server, "--no-cache", "--force")[0] == 0
    assert load_pack("melanoma.yaml").symptoms[0] == "Larger than six millimeters"


@pytest.mark.parametrize("kind", ["run.yaml", "notes"])
def test_force_replaces_a_pack_never_a_runs_file_or_a_file_of_something_else(capsys, vip_env, llm_server, kind):
    """`--out run/run.yaml --force` replaced a run's run.yaml with a pack (the run then read it as its own
    symptoms), and `--out notes.yaml --force` a file of the user's: refused before any question, untouched."""
    import shutil

    if kind == "run.yaml":
        shutil.copytree(Path(__file__).parent / "fixtures" / "run-v0.1.0" / "vip", "run")
        target, what = Path("run") / "run.yaml", "it is the run.yaml of a vip train run"
    else:
        target, what = Path("notes.yaml"), "it holds no symptoms vip can read"
        target.write_text("# my notes\n- buy milk\n")
    before = target.read_bytes()
    code, _, err = melanoma(capsys, llm_server, "--out", str(target), "--force")
    assert code == 1 and [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {target} is not a symptom pack ({what}), and --force replaces only packs (choose another --out, or "
        "move that file away)"]
    assert not llm_server.requests and target.read_bytes() == before
    Path("mine.yaml").write_text("melanoma:\n  - A dark spot with blurry edges\n")  # a symptoms file: replaced
    llm_server.answer(BULLETS)
    assert melanoma(capsys, llm_server, "--out", "mine.yaml", "--force")[0] == 0
    assert load_pack("mine.yaml").symptoms[0] != "A dark spot with blurry edges"


def test_a_cached_answer_changed_on_disk_is_asked_again_not_used(capsys, vip_env, llm_server, tmp_path):
    """One character of a cached answer changed (a flipped bit: 'six' became 'sox') would have changed a
    symptom's words without a sign; the entry's sha256 no longer matches, so the question is asked again."""
    llm_server.answer(BULLETS)
    assert melanoma(capsys, llm_server)[0] == 0
    [entry] = (tmp_path / "cache" / "llm").glob("*.json")
    entry.write_text(entry.read_text().replace("six millimeters", "sox millimeters"))
    llm_server.answer(BULLETS)
    code, out, err = melanoma(capsys, llm_server, "--out", "again.yaml")
    assert code == 0 and len(llm_server.requests) == 2 and "(answers from cache)" not in out, err
    assert load_pack("again.yaml").symptoms == load_pack("melanoma.yaml").symptoms
    assert "six millimeters" in entry.read_text()  # the good answer replaced the damaged one


def test_a_cached_answer_of_an_earlier_vip_without_a_sha256_is_still_used(capsys, vip_env, llm_server, tmp_path):
    import json

    llm_server.answer(BULLETS)
    assert melanoma(capsys, llm_server)[0] == 0
    [entry] = (tmp_path / "cache" / "llm").glob("*.json")
    record = json.loads(entry.read_text())
    del record["sha256"]
    entry.write_text(json.dumps(record))
    code, out, _ = melanoma(capsys, llm_server, "--out", "again.yaml")
    assert code == 0 and len(llm_server.requests) == 1 and "(answers from cache)" in out


def test_cache_hit_sends_no_request(capsys, vip_env, llm_server):
    llm_server.answer(BULLETS)
    assert melanoma(capsys, llm_server)[0] == 0
    code, out, _ = melanoma(capsys, llm_server, "--out", "again.yaml")
    assert code == 0 and len(llm_server.requests) == 1 and "(answers from cache)" in out
    assert load_pack("again.yaml").symptoms == load_pack("melanoma.yaml").symptoms


def test_a_read_only_answer_cache_is_warned_about_once_and_the_packs_are_still_written(
        capsys, vip_env, llm_server, tmp_path):
    """The answers were asked for (and paid), then silently not cached: the next run asked for them again, and
    the hints said "answers already received are cached". Now one warning names the folder, once for the run."""
    read_only_folder(tmp_path / "cache")
    llm_server.answer(BULLETS).answer("- Symmetric shape\n- Even brown color\n- Smooth, clear edges\n- Regular net")
    code, _, err = generate(capsys, llm_server, "-d", "melanoma", "-d", "nevus", "--modality", "dermoscopic images",
                            "--out", "packs")
    warnings = [line for line in err.splitlines() if line.startswith("warning: cannot write the LLM answer cache")]
    assert code == 0 and len(llm_server.requests) == 2 and len(warnings) == 1, err
    assert f"{tmp_path / 'cache' / 'llm'} (permission denied)" in warnings[0] and "a rerun asks" in warnings[0]
    assert load_pack("packs/nevus.yaml").symptoms[0] == "Symmetric shape"


def test_a_cache_folder_every_user_can_write_is_refused_before_any_request_with_no_cache_too(
        capsys, vip_env, llm_server, tmp_path, monkeypatch):
    """With --no-cache the answer was asked for (and paid), then lost: writing it into the cache folder found
    that folder writable by every user."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("VIP_CACHE_DIR", str(shared))
    llm_server.answer(BULLETS)
    code, _, err = melanoma(capsys, llm_server, "--no-cache")
    assert code == 1 and err.startswith(f"error: VIP_CACHE_DIR {shared} is writable by every user")
    assert len(err.splitlines()) == 1 and llm_server.requests == [] and not Path("melanoma.yaml").exists()


def test_several_diseases_write_one_pack_each_into_a_folder(capsys, vip_env, llm_server):
    llm_server.answer(BULLETS).answer(
        "- Symmetric shape\n- Even brown color\n- Smooth, clear edges\n- Regular net pattern"
    )
    code, out, _ = generate(capsys, llm_server, "-d", "melanoma", "-d", "nevus", "--out", "packs")
    assert code == 0
    assert load_pack("packs/melanoma.yaml").name == "melanoma"
    assert load_pack("packs/nevus.yaml").symptoms[0] == "Symmetric shape"
    assert "in dermoscopic images" in llm_server.requests[1]["body"]["messages"][0]["content"]


def test_several_diseases_lose_the_items_that_name_each_other(capsys, vip_env, llm_server):
    llm_server.answer(BULLETS.replace("Small dark dots", "Darker than a common nevus, small dark dots")).answer(
        "- Symmetric shape\n- Even brown color\n- Unlike melanomas, smooth edges\n- Regular net pattern\n- One color"
    )
    code, _, err = generate(capsys, llm_server, "-d", "melanoma", "-d", "nevus", "--out", "packs")
    assert code == 0, err
    assert not any("nevus" in item for item in load_pack("packs/melanoma.yaml").symptoms)
    assert load_pack("packs/nevus.yaml").symptoms == ("Symmetric shape", "Even brown color", "Regular net pattern",
                                                      "One color")
    assert "(names another class ('nevus'))" in err and "(names another class ('melanoma'))" in err


def test_one_failing_disease_keeps_the_others_and_exits_non_zero(capsys, vip_env, llm_server):
    llm_server.answer(BULLETS).answer("I'm sorry, I can't help with that.").answer(NUMBERED)
    code, _, err = generate(capsys, llm_server, "-d", "melanoma", "-d", "nevus", "-d", "basal cell carcinoma")
    assert code == 1
    assert Path("melanoma.yaml").exists() and Path("basal_cell_carcinoma.yaml").exists()
    assert not Path("nevus.yaml").exists()
    assert "the stage 1 answer for 'nevus' is a refusal" in err and "1 of 3 packs not written: nevus" in err


def test_several_diseases_need_a_folder_for_out(capsys, vip_env, llm_server):
    code, _, err = generate(capsys, llm_server, "-d", "melanoma", "-d", "nevus", "--out", "x.yaml")
    assert code == 2 and "--out must be a folder" in err and not llm_server.requests


# --- stage 2: the image grid --------------------------------------------------------------


def test_images_run_stage_two_and_keep_what_both_agree_on(capsys, vip_env, llm_server, tmp_path):
    folder = write_images(tmp_path / "mel", 18, broken=2)
    llm_server.answer(NUMBERED).answer(STAGE2)
    code, out, err = melanoma(capsys, llm_server, "--images", str(folder))
    assert code == 0, err
    pack = load_pack("melanoma.yaml")
    assert pack.symptoms == (
        "Asymmetric shape",
        "Irregular, jagged edges",
        "Several colors such as brown, black and blue",
        "Small dark dots",
    )
    agreement = pack.source["agreement"]
    assert [row["symptom"] for row in agreement["dropped"]] == ["Larger than six millimeters"]
    assert {"symptom": "Small dark dots", "stage2": "Small dark dots and globules", "score": 0.866} in agreement["kept"]
    assert pack.source["raw_answers"]["stage2"] == STAGE2 and len(pack.source["images"]["files_sha256"]) == 16
    assert "color, shape and texture" in pack.source["prompts"]["stage2"]
    for line in ("dropped  Larger than six millimeters", "beyond --n  Blue-white veil", "kept     Asymmetric shape"):
        assert " ".join(line.split()) in " ".join(out.replace("│", " ").split())
    content = llm_server.requests[1]["body"]["messages"][0]["content"]
    assert content[0]["type"] == "text" and "this melanoma image" in content[0]["text"]
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    from PIL import Image

    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (896, 896)


def test_what_was_removed_from_each_answer_names_its_stage_and_counts_read_as_english(capsys, vip_env, llm_server,
                                                                                     tmp_path):
    """With --images, each stage's removals were warned as "removed from the answer", twice alike when both
    answers held the same line; one agreeing symptom was "only 1 symptoms agree", and an answer of one usable
    symptom "gave 1 usable symptoms ... (lower --n, ...)", naming no value of --n that works."""
    folder = write_images(tmp_path / "mel", 16)
    llm_server.answer(NUMBERED + "\n7. Looks like melanoma").answer(STAGE2 + "\n- Typical of melanoma")
    code, _, err = melanoma(capsys, llm_server, "--images", str(folder), "--agree-threshold", "0.9")
    assert code == 0, err
    assert "melanoma: removed from the stage 1 (text) answer: 'Looks like melanoma' (names the disease)" in err
    assert "melanoma: removed from the stage 2 (image) answer: 'Typical of melanoma' (names the disease)" in err
    assert "warning: melanoma: only 1 symptom agrees with the images (--n 4)" in err
    llm_server.answer("- Asymmetric shape\n- Melanoma cells")
    code, _, err = melanoma(capsys, llm_server, "--out", "again.yaml", "--no-cache")
    assert code == 1 and "gave 1 usable symptom, fewer than --n 4" in err and "(pass --n 1 to keep it, or " in err


def test_images_with_llm_judge(capsys, vip_env, llm_server, tmp_path):
    folder = write_images(tmp_path / "mel", 16)
    llm_server.answer(NUMBERED).answer(STAGE2).answer("[0, 3, 4, 0, 5, 2]")
    code, _, err = melanoma(capsys, llm_server, "--images", str(folder), "--judge", "llm", "--n", "2")
    assert code == 0, err
    assert load_pack("melanoma.yaml").symptoms == ("Asymmetric shape", "Irregular, jagged edges")
    assert "List A" in llm_server.requests[2]["body"]["messages"][0]["content"]


def test_images_folder_with_fewer_than_16_readable_images(capsys, vip_env, llm_server, tmp_path):
    folder = write_images(tmp_path / "few", 10, broken=3)
    code, _, err = melanoma(capsys, llm_server, "--images", str(folder))
    assert code == 1 and "10 readable images (of 13 image files), need 16" in err and str(folder) in err
    assert not llm_server.requests and not Path("melanoma.yaml").exists()


def test_the_grid_leaves_out_hidden_files_as_a_class_folder_does(tmp_path):
    """A macOS archive's `._img.png` resource forks and hidden files were counted as the class's images."""
    from PIL import Image

    from vipcli.errors import VipError
    from vipcli.symptoms.grid import make_grid

    folder = write_images(tmp_path / "mel", 15)
    Image.new("RGB", (12, 10), (200, 0, 0)).save(folder / ".hidden.png")  # readable, but hidden
    (folder / "._img00.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    with pytest.raises(VipError, match=r"15 readable images \(of 15 image files\), need 16"):
        make_grid(folder)
    write_images(tmp_path / "more", 17)
    Image.new("RGB", (12, 10)).save(tmp_path / "more" / "._img05.png")
    first, again = make_grid(tmp_path / "more", seed=3), make_grid(tmp_path / "more", seed=3)
    assert first.files == again.files and first.digests == again.digests and first.jpeg == again.jpeg
    assert not any(name.startswith(".") for name in first.files)


@pytest.mark.parametrize("kind", ["12-bit", "signed", "transparent"])
def test_a_grid_tile_is_the_image_as_vip_encodes_it(tmp_path, kind):
    """The grid scaled 16-bit images by their own min..max and dropped alpha, where the encoder scales
    by the bit depth and puts transparent pixels on black: the LLM saw other pictures than the model."""
    import numpy as np
    from PIL import Image, ImageOps

    from vipcli.images import load_image
    from vipcli.symptoms.grid import read_tile

    ramp = np.add.outer(np.arange(40), np.arange(40))  # [40, 40], 0..78
    path = tmp_path / ("tile.png" if kind != "signed" else "tile.tif")
    if kind == "12-bit":
        Image.fromarray((1000 + ramp * 30).astype(np.uint16)).save(path)  # 1000..3340: 12-bit data
    elif kind == "signed":
        Image.fromarray((ramp * 25 - 1000).astype(np.int16)).save(path)  # -1000..950, a CT slice
    else:
        pixels = np.full((40, 40, 4), 180, np.uint8)
        pixels[..., 3] = 255
        pixels[:, :20, 3] = 0  # the left half transparent, the right half opaque grey 180
        Image.fromarray(pixels, "RGBA").save(path)
    tile = np.asarray(read_tile(path, 32), dtype=int)  # [32, 32, 3]
    encoded = np.asarray(ImageOps.fit(load_image(path), (32, 32), method=Image.Resampling.BICUBIC), dtype=int)
    assert np.array_equal(tile, encoded)
    if kind == "12-bit":
        assert tile.min() >= round(1000 / 4095 * 255) - 2  # not stretched down to black
    elif kind == "transparent":
        assert tile[:, :8].max() == 0 and tile[:, -8:].min() == 180


def test_images_root_with_class_subfolders(capsys, vip_env, llm_server, tmp_path):
    write_images(tmp_path / "data" / "Melanoma", 16)
    llm_server.answer(NUMBERED).answer(STAGE2)
    assert melanoma(capsys, llm_server, "--images", str(tmp_path / "data"))[0] == 0
    assert load_pack("melanoma.yaml").source["images"]["folder"].endswith("Melanoma")


def test_no_agreement_is_a_clear_error(capsys, vip_env, llm_server, tmp_path):
    folder = write_images(tmp_path / "mel", 16)
    llm_server.answer(NUMBERED).answer("- Smooth pink surface\n- Round outline")
    code, _, err = melanoma(capsys, llm_server, "--images", str(folder), "--agree-threshold", "0.9")
    assert code == 1 and "no stage-1 symptom of 'melanoma' agrees" in err and not Path("melanoma.yaml").exists()


def test_cache_files_are_json_without_the_key(capsys, vip_env, llm_server, tmp_path):
    llm_server.answer(BULLETS)
    melanoma(capsys, llm_server)
    entries = list((tmp_path / "cache" / "llm").glob("*.json"))
    assert len(entries) == 1 and json.loads(entries[0].read_text())["answer"] == BULLETS


def test_one_images_root_serves_several_diseases_by_subfolder(capsys, vip_env, llm_server, tmp_path):
    write_images(tmp_path / "data" / "melanoma", 16)
    write_images(tmp_path / "data" / "Nevus", 16)
    llm_server.answer(NUMBERED).answer(STAGE2).answer(NUMBERED).answer(STAGE2)
    code, _, err = generate(capsys, llm_server, "-d", "melanoma", "-d", "nevus", "--images", str(tmp_path / "data"))
    assert code == 0, err
    assert load_pack("nevus.yaml").source["images"]["folder"].endswith("Nevus")
    assert [len(r["body"]["messages"][0]["content"]) for r in llm_server.requests][1::2] == [2, 2]


def test_endpoint_failure_stops_the_remaining_diseases(capsys, vip_env, llm_server):
    llm_server.answer(BULLETS).fail(401, "bad key")
    code, _, err = generate(capsys, llm_server, "-d", "melanoma", "-d", "nevus", "-d", "pneumonia")
    assert code == 1 and len(llm_server.requests) == 2
    assert Path("melanoma.yaml").exists() and not Path("nevus.yaml").exists()
    assert "rejected the API key" in err and "packs written so far are complete" in err


# --- answers the server cut at its output limit (finish_reason "length") --------------------

CUT = "1. Asymmetric shape\n2. Irregular edges\n3. Many colors\n4. Dark dots\n5. A hazy blue-white area over the"


def cut_body(content: str) -> dict:
    """A chat-completions body whose answer stopped at the server's output-token limit."""
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "length"}]}


def test_an_answer_cut_at_the_output_limit_loses_its_cut_line_and_says_so(capsys, vip_env, llm_server):
    # the half-written last item is never a symptom, asked afresh or read back from the cache
    llm_server.raw(cut_body(CUT))
    for _ in range(2):
        code, out, err = melanoma(capsys, llm_server, "--n", "5", "--force")
        assert code == 1 and "'A hazy blue-white area over the' (cut off at the model's output limit)" in err
        assert "raise the server's output-token limit" in err and not Path("melanoma.yaml").exists()
    assert len(llm_server.requests) == 1  # the second run read the cache, and knew the answer was cut
    code, out, err = melanoma(capsys, llm_server, "--n", "4")
    assert code == 0 and load_pack("melanoma.yaml").symptoms[-1] == "Dark dots"
    assert "removed from the answer: 'A hazy blue-white area over the' (cut off" in err
    # JSON keeps its complete elements; a one-line paragraph cut mid-way holds no complete item
    llm_server.raw(cut_body('```json\n["Asymmetric shape", "Irregular edges", "Many colors", "Dark dots", "Blue-wh'))
    code, out, err = melanoma(capsys, llm_server, "--force", "--no-cache")
    assert code == 0 and load_pack("melanoma.yaml").symptoms == ("Asymmetric shape", "Irregular edges",
                                                                 "Many colors", "Dark dots")
    llm_server.raw(cut_body("Key features include an uneven shape, blurry edges, several col"))
    code, out, err = melanoma(capsys, llm_server, "--force", "--no-cache")
    assert code == 1 and "was cut off at the model's output limit before any complete item" in err
    # a whole answer that only happens to end at the limit loses nothing
    llm_server.raw(cut_body(CUT.rsplit("\n", 1)[0] + "\n"))
    assert melanoma(capsys, llm_server, "--force", "--no-cache")[0] == 0
    assert load_pack("melanoma.yaml").symptoms[-1] == "Dark dots"


def test_an_empty_answer_says_why_and_that_it_is_not_cached(capsys, vip_env, llm_server):
    """A reasoning model that spent its whole output limit thinking (content null, finish_reason "length") was "is
    empty (try another --model ...; this answer is cached, --no-cache asks again)": it says so now and how to fix
    it; and an empty answer, which is never cached, no longer claims to be."""
    reasoning = cut_body(None)
    reasoning["choices"][0]["message"]["reasoning_content"] = "Let me think about the features of melanoma..."
    llm_server.raw(reasoning).answer("")
    code, _, err = melanoma(capsys, llm_server)
    assert code == 1 and err.splitlines()[-1] == (
        "error: the stage 1 answer for 'melanoma' is empty: the model stopped at its output limit before writing any "
        "(a reasoning model may have spent it all thinking) (raise the server's output-token limit (max_tokens; "
        "Ollama num_predict, llama.cpp --n-predict))")
    code, _, err = melanoma(capsys, llm_server)
    assert code == 1 and err.splitlines()[-1] == ("error: the stage 1 answer for 'melanoma' is empty (try again, or "
                                                  "another --model (an empty answer is not cached))")
    assert len(llm_server.requests) == 2  # neither was cached: the second run asked again


@pytest.mark.parametrize("choice", [
    {"finish_reason": "content_filter", "message": {"role": "assistant", "content": None}},  # OpenAI, Azure
    {"finish_reason": "refusal", "message": {"role": "assistant", "content": []}},  # Anthropic's, through a gateway
    {"finish_reason": "SAFETY", "message": {"role": "assistant", "content": ""}},  # Gemini's, through a gateway
    {"finish_reason": "stop", "message": {"role": "assistant", "content": ""},  # Azure's per-category results
     "content_filter_results": {"hate": {"filtered": False}, "violence": {"filtered": True, "severity": "medium"}}},
])
def test_an_answer_a_content_filter_removed_says_so_and_what_to_do(capsys, vip_env, llm_server, choice):
    """An answer emptied by the provider's content filter said only "is empty (try again, or another --model)"."""
    llm_server.raw({"choices": [{"index": 0, **choice}]})
    code, _, err = melanoma(capsys, llm_server)
    assert code == 1 and err.splitlines()[-1] == (
        "error: the stage 1 answer for 'melanoma' is empty: the provider's content filter removed it (finish_reason "
        "'content_filter') (rephrase the class name (--disease with its medical term, e.g. 'nevus' for 'mole'), or try "
        "another --model (an empty answer is not cached))"), err
    assert not Path("melanoma.yaml").exists()


def test_a_stage_2_answer_a_content_filter_removed_says_the_images_may_have_set_it_off(capsys, vip_env, llm_server,
                                                                                      tmp_path):
    llm_server.answer(NUMBERED).raw({"choices": [{"index": 0, "finish_reason": "content_filter",
                                                  "message": {"role": "assistant", "content": ""}}]})
    code, _, err = melanoma(capsys, llm_server, "--images", write_images(tmp_path / "mel", 18))
    assert code == 1 and "stage 2 answer for 'melanoma' is empty: the provider's content filter removed it" in err
    assert err.rstrip().endswith("; or leave the images out (no --images; --text-only with --data))"), err


@pytest.mark.parametrize("answer, message", [
    ("[]", "is an empty list, no symptom in it: '[]'"),
    ('```json\n{"symptoms": []}\n```', "is an empty list, no symptom in it"),
    ("- Melanoma shows dark dots\n- Blurry edges of a melanoma\n- Melanomas have many colors\n- A typical melanoma",
     "has no usable item (all removed); removed: 'Melanoma shows dark dots' (names the disease); 'Blurry edges of a "
     "melanoma' (names the disease); 'Melanomas have many colors' (names the disease); and 1 more"),
])
def test_an_answer_with_nothing_usable_says_what_was_in_it(capsys, vip_env, llm_server, answer, message):
    """`[]` was "is not a list", and an answer whose every item named the disease "has no usable item (all removed)",
    with no word of what was removed or why."""
    llm_server.answer(answer)
    code, _, err = melanoma(capsys, llm_server)
    assert code == 1 and err.count("error:") == 1 and f"the stage 1 answer for 'melanoma' {message}" in err, err
    assert not Path("melanoma.yaml").exists()


@pytest.mark.parametrize("given", [".", "..", "./"])
def test_a_pack_names_a_relative_images_folder_by_its_own_name(capsys, vip_env, llm_server, tmp_path, monkeypatch,
                                                               given):
    """`--images .` recorded the folder as "" (and `..` as ".."): the pack said nothing of where its images were."""
    folder = write_images(tmp_path / "mel", 18)
    (folder / "sub").mkdir()
    monkeypatch.chdir(folder if given != ".." else folder / "sub")
    llm_server.answer(NUMBERED).answer(STAGE2)
    code, _, err = melanoma(capsys, llm_server, "--images", given, "--out", tmp_path / "melanoma.yaml")
    assert code == 0, err
    assert load_pack(tmp_path / "melanoma.yaml").source["images"]["folder"] == "mel"


# --- answers CLIP cannot use well: another language, names only ------------------------------

FRENCH = """Voici les caractéristiques visuelles utiles :

- Bordures irrégulières et mal définies
- Plusieurs couleurs dans la tache
- Asymétrie de la forme
- Points noirs au centre de la tache"""
NAMES_ONLY = """- Skin cancer
- Malignant tumor
- Cancerous skin lesion
- A type of cancer
- Nevus"""


def test_both_questions_ask_for_an_answer_in_english(capsys, vip_env, llm_server, tmp_path):
    llm_server.answer(NUMBERED).answer(STAGE2)
    code, _, err = melanoma(capsys, llm_server, "--images", str(write_images(tmp_path / "imgs", 16)))
    assert code == 0, err
    texts = [request["body"]["messages"][0]["content"] for request in llm_server.requests]
    stage2 = texts[1][0]["text"]
    assert texts[0].endswith(" Answer in English.") and stage2.endswith(" Answer in English.")


def test_an_answer_in_french_is_written_with_one_warning(capsys, vip_env, llm_server):
    llm_server.answer(FRENCH)
    code, out, err = melanoma(capsys, llm_server)
    assert code == 0, err  # a warning, not an error
    assert load_pack("melanoma.yaml").symptoms[0] == "Bordures irrégulières et mal définies"
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("warning: melanoma.yaml: the symptoms of 'melanoma' do not "
                                                   "look English (")
    assert "wrote melanoma.yaml: 4 symptoms" in out
    # not "generate them again with `vip symptoms generate`", the command that just wrote them
    assert lines[0].endswith("translate them, or generate them again with another --model and --force (this one "
                             "answered in another language, though asked for English)")


def test_an_answer_of_disease_names_only_is_warned_about_in_one_line(capsys, vip_env, llm_server):
    llm_server.answer(NAMES_ONLY).answer("- Round shape\n- One even color\n- Smooth edges\n- Small size")
    code, out, err = generate(capsys, llm_server, "--disease", "melanoma", "--disease", "nevus", "--modality",
                              "dermoscopic images", "--out", "packs")
    assert code == 0, err
    assert load_pack("packs/melanoma.yaml").symptoms == ("Skin cancer", "Malignant tumor", "Cancerous skin lesion",
                                                         "A type of cancer")
    assert ("warning: packs/melanoma.yaml: 4 symptoms of 'melanoma' only name a disease, with no word for what is "
            "seen: 'Skin cancer', 'Malignant tumor', 'Cancerous skin lesion', 'A type of cancer'; describe what "
            "the images show instead") in err
    assert "'Nevus' (names another class ('nevus'))" in err
    assert "packs/nevus.yaml" not in err  # nevus's answer describes what is seen


WINDOWS_DEVICE = ("which Windows takes as its device {device}: the pack folder could not be copied to or opened on "
                  "Windows")


@pytest.mark.parametrize("args, message", [
    (["--disease", "aux"], "the pack of --disease 'aux' would be the file aux.yaml, {why} (name the file otherwise, "
                           "e.g. --out aux-pack.yaml)"),
    (["--disease", "Nul"], "the pack of --disease 'Nul' would be the file Nul.yaml, {why}"),
    (["--disease", "melanoma", "--out", "packs/CON.yml"], "--out packs/CON.yml would be the file CON.yml, {why} (name "
                                                          "the file otherwise, e.g. --out packs/CON-pack.yaml)"),
    (["--disease", "melanoma", "--out", "com1"], "--out com1 would be the file com1, {why}"),
    (["--disease", "melanoma", "--disease", "lpt9", "--out", "."],
     "the pack of --disease 'lpt9' would be the file lpt9.yaml, {why} (generate it with its own --disease and --out "
     "lpt9-pack.yaml)"),
])
def test_a_pack_file_named_as_a_windows_device_is_refused_on_every_platform(capsys, vip_env, llm_server, args,
                                                                            message):
    """`--disease aux` wrote aux.yaml, which a Windows clone or copy of the pack folder cannot hold (it is the device
    AUX there, whatever the extension or case)."""
    Path("packs").mkdir()
    device = next(word for word in ("AUX", "NUL", "CON", "COM1", "LPT9") if word.lower() in " ".join(args).lower())
    code, out, err = generate(capsys, llm_server, *args, "--modality", "dermoscopic images")
    assert (code, out) == (2, "") and err.startswith(
        "error: " + message.format(why=WINDOWS_DEVICE.format(device=device))) and len(err.splitlines()) == 1
    assert llm_server.requests == [] and [p.name for p in Path(".").rglob("*")] == ["packs"]


def test_a_name_that_only_starts_like_a_device_is_a_pack_file_name(capsys, vip_env, llm_server):
    llm_server.answer(BULLETS)
    code, _, err = generate(capsys, llm_server, "--disease", "console", "--modality", "dermoscopic images")
    assert code == 0, err
    assert load_pack("console.yaml").name == "console"


def test_a_second_generation_of_the_same_pack_fails_before_asking_the_llm(capsys, vip_env, llm_server):
    """Two `vip symptoms generate --out melanoma.yaml` at once both asked the LLM, and the later pack replaced the
    other's (or, without --force, failed only once its answers had come); the second now fails at once."""
    from vipcli.locks import output_lock

    llm_server.answer(BULLETS)
    with output_lock(Path("melanoma.yaml"), lock=Path(".melanoma.yaml.lock")):  # another vip generating it now
        code, _, err = melanoma(capsys, llm_server, "--force")
    assert code == 1 and err.startswith("error: melanoma.yaml is being written by another vip process")
    assert llm_server.requests == [] and not Path("melanoma.yaml").exists()
    assert melanoma(capsys, llm_server)[0] == 0  # once that one is done, the pack is made as before
    assert sorted(p.name for p in Path(".").iterdir()) == ["melanoma.yaml"]  # and no lock file is left


def test_two_diseases_whose_answers_give_the_same_symptoms_are_named(capsys, vip_env, llm_server):
    """Two packs written with the same symptoms (up to case and punctuation) said nothing; a model trained on them
    cannot tell the two classes apart by their symptoms."""
    answer = "- Dark brown spot\n- Irregular border\n- Several colors\n- Raised center"
    llm_server.answer(answer).answer(answer.replace("Irregular border", "irregular border."))
    code, _, err = generate(capsys, llm_server, "--disease", "melanoma", "--disease", "nevus", "--modality",
                            "dermoscopic images", "--out", "packs")
    assert code == 0, err
    assert ("warning: classes 'melanoma' and 'nevus' have the same symptoms, so their symptom prompts cannot tell "
            "them apart") in " ".join(err.split())
    assert "ask again for one of them with --force, or edit its pack" in " ".join(err.split())
