"""`vip symptoms generate --data DIR`: a pack for every class folder without one (offline LLM server)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vipcli.cli.main import main
from vipcli.packs import load_pack, symptoms_for_classes


PSORIASIS_TEXT = """Here are useful visual features for psoriasis in dermoscopic images:

- Red patch with sharp edges
- Thick silvery-white scales on top
- Small red dots spread evenly across the patch
- Dry, cracked surface
- Itchy feeling

These should help CLIP."""
PSORIASIS_IMAGES = """| Feature | Description |
|---|---|
| Color | Red patch with sharp, clear edges |
| Scale | Thick white scales on the surface |
| Vessels | Small red dots spread evenly |
"""
LICHEN_TEXT = (
    "Key features include violet flat-topped bumps, fine white lines crossing the surface, "
    "a shiny surface and dotted vessels at the edge."
)
LICHEN_IMAGES = "1. **Shape**\n   - Flat-topped bumps, violet color\n   - Fine white lines on the surface\n2. Shiny surface"


@pytest.fixture
def work(tmp_path, monkeypatch):
    """cwd tmp_path/work, cache in tmp_path, a wide console, no key needed (local server)."""
    monkeypatch.setenv("VIP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


def write_class(root: Path, name: str, train: int) -> None:
    """`train` tiny PNGs in root/train/NAME and one each in root/val/NAME and root/test/NAME."""
    from PIL import Image

    for split, count in (("train", train), ("val", 1), ("test", 1)):
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("RGB", (10 + i, 10), color=(i * 13 % 256, 90, 160)).save(folder / f"{name}{i:02d}.png")


@pytest.fixture
def data(tmp_path) -> Path:
    """Three classes: melanoma (a shipped pack), lichen_planus and psoriasis (none), 17 training images each."""
    root = tmp_path / "skin"
    for name in ("lichen_planus", "melanoma", "psoriasis"):
        write_class(root, name, 17)
    return root


def vip(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def generate(capsys, server, *args) -> tuple[int, str, str]:
    """`vip symptoms generate` against `server` with fast retries; `args` may name another --model."""
    model = () if "--model" in args else ("--model", "test-model")  # an option given twice is refused
    return vip(capsys, "symptoms", "generate", "--base-url", server.url, *model, "--backoff", "0.01", "--timeout", "5",
               *args)


def flat(text: str) -> str:
    """Table output with the box lines and padding taken out."""
    return " ".join(text.replace("│", " ").split())


def test_every_class_without_a_pack_gets_one_from_its_own_training_images(capsys, work, data, llm_server):
    llm_server.answer(LICHEN_TEXT).answer(LICHEN_IMAGES).answer(PSORIASIS_TEXT).answer(PSORIASIS_IMAGES)
    code, out, err = generate(capsys, llm_server, "--data", data, "--modality", "dermoscopic images", "--out", "packs")
    assert code == 0, err
    assert sorted(p.name for p in Path("packs").iterdir()) == ["lichen_planus.yaml", "psoriasis.yaml"]
    psoriasis = load_pack("packs/psoriasis.yaml")
    assert psoriasis.name == "psoriasis" and psoriasis.symptoms == (
        "Red patch with sharp edges", "Thick silvery-white scales on top", "Small red dots spread evenly across the patch",
    )
    images = psoriasis.source["images"]
    assert images["folder"] == "psoriasis" and images["training_images"] == 17  # no path: it may name a patient
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (data / "train" / "psoriasis").iterdir()}
    assert "files" not in images and len(set(images["files_sha256"])) == 16 and set(images["files_sha256"]) <= digests
    assert str(data) not in Path("packs/psoriasis.yaml").read_text()
    lichen = load_pack("packs/lichen_planus.yaml")
    assert lichen.name == "lichen planus" and "Fine white lines crossing the surface" in lichen.symptoms
    prompts = [r["body"]["messages"][0]["content"] for r in llm_server.requests]
    assert "to detect lichen planus in dermoscopic images" in prompts[0]
    assert prompts[1][1]["type"] == "image_url" and "this psoriasis image" in prompts[3][0]["text"]
    table = flat(out)
    assert "melanoma melanoma shipped (paper: Fang et al., MICCAI 2024)" in table
    assert (f"psoriasis packs/psoriasis.yaml generated: test-model at {llm_server.host}, "
            "stage 2 on 16 of 17 training images") in table
    assert f"train with them: vip train --data {data} --symptoms packs" in err and "train with" not in out
    classes = ["lichen_planus", "melanoma", "psoriasis"]
    assert set(symptoms_for_classes(classes, ["packs"])) == set(classes)


def test_modality_comes_from_the_other_classes_packs(capsys, work, data, llm_server):
    llm_server.answer(LICHEN_TEXT).answer(PSORIASIS_TEXT)
    code, _, err = generate(capsys, llm_server, "--data", data, "--text-only")
    assert code == 0, err
    assert all("in dermoscopic images" in r["body"]["messages"][0]["content"] for r in llm_server.requests)
    assert all(isinstance(r["body"]["messages"][0]["content"], str) for r in llm_server.requests)  # no image
    assert "images" not in load_pack("psoriasis.yaml").source


def test_a_model_that_refused_a_temperature_for_one_class_is_asked_without_one_for_the_next(capsys, work, data,
                                                                                            llm_server):
    refusal = {"error": {"message": "Unsupported value: 'temperature' does not support 0 with this model.",
                         "type": "invalid_request_error", "param": "temperature"}}
    llm_server.raw(refusal, status=400).answer(LICHEN_TEXT).answer(PSORIASIS_TEXT)
    code, _, err = generate(capsys, llm_server, "--data", data, "--text-only", "--model", "gpt-5")
    assert code == 0, err
    assert [r["body"].get("temperature", "none") for r in llm_server.requests] == [0.0, "none", "none"]


def test_given_and_earlier_packs_are_used_and_force_makes_new_ones(capsys, work, data, llm_server, tmp_path):
    given = tmp_path / "psoriasis_pack.yaml"
    given.write_text("name: psoriasis\nsymptoms: [Silvery scales, Red patch]\nsource: {kind: manual}\n")
    llm_server.answer(LICHEN_TEXT).answer(LICHEN_IMAGES)
    code, out, err = generate(capsys, llm_server, "--data", data, "--symptoms", given, "--out", "packs")
    assert code == 0, err
    assert len(llm_server.requests) == 2
    assert f"psoriasis {given} given with --symptoms (manual)" in flat(out)
    assert f"--symptoms {given} --symptoms packs" in err
    code, out, _ = generate(capsys, llm_server, "--data", data, "--symptoms", given, "--out", "packs")
    assert code == 0 and len(llm_server.requests) == 2  # nothing asked again
    assert "lichen_planus packs/lichen_planus.yaml already in --out (llm: test-model" in flat(out)
    llm_server.answer(LICHEN_TEXT).answer(LICHEN_IMAGES)
    code, out, _ = generate(capsys, llm_server, "--data", data, "--symptoms", given, "--out", "packs", "--force",
                            "--no-cache")
    assert code == 0 and len(llm_server.requests) == 4 and "generated: test-model" in out


def test_a_pack_in_out_for_a_shipped_class_is_the_one_the_table_names_and_training_uses(capsys, work, data,
                                                                                         llm_server):
    """`vip train --symptoms OUT`, the command printed last, takes OUT/melanoma.yaml over the shipped pack."""
    Path("packs").mkdir()
    Path("packs/melanoma.yaml").write_text("name: melanoma\nsymptoms: [Blue-white veil, Dark dots]\n"
                                           "source: {kind: manual}\n")
    llm_server.answer(LICHEN_TEXT).answer(LICHEN_IMAGES).answer(PSORIASIS_TEXT).answer(PSORIASIS_IMAGES)
    code, out, err = generate(capsys, llm_server, "--data", data, "--modality", "dermoscopic images", "--out", "packs")
    assert code == 0, err
    assert "melanoma packs/melanoma.yaml already in --out (manual); --force makes a new one" in flat(out)
    assert f"train with them: vip train --data {data} --symptoms packs" in err and "train with" not in out
    classes = ["lichen_planus", "melanoma", "psoriasis"]
    assert symptoms_for_classes(classes, ["packs"])["melanoma"] == ["Blue-white veil", "Dark dots"]
    code, out, err = generate(capsys, llm_server, "--data", data, "--symptoms", "melanoma", "--out", "packs")
    assert code == 0, err  # given by name, the shipped pack wins, as it does for the printed command
    assert "melanoma melanoma shipped (paper: Fang et al., MICCAI 2024)" in flat(out)
    assert "--symptoms melanoma --symptoms packs" in err
    assert symptoms_for_classes(classes, ["melanoma", "packs"])["melanoma"][0] == "The spot is asymmetric on both sides"


def test_a_class_with_too_few_training_images_fails_before_any_question(capsys, work, tmp_path, llm_server):
    write_class(tmp_path / "skin", "melanoma", 3)
    write_class(tmp_path / "skin", "psoriasis", 9)
    code, _, err = generate(capsys, llm_server, "--data", tmp_path / "skin")
    assert code == 1 and "stage 2 shows 16 training images of a class; 'psoriasis' has 9" in err
    assert "--text-only" in err and not llm_server.requests


def test_one_failing_class_keeps_the_others_and_the_table_says_so(capsys, work, data, llm_server):
    llm_server.answer("I'm sorry, but I can't help with that.").answer(PSORIASIS_TEXT).answer(PSORIASIS_IMAGES)
    code, out, err = generate(capsys, llm_server, "--data", data)
    assert code == 1 and "1 of 2 packs not written: lichen_planus" in err
    assert "train with them" not in out + err  # a command that would fail for the class without a pack
    assert "lichen_planus - failed: the stage 1 answer for 'lichen planus' is a refusal" in flat(out)
    assert Path("psoriasis.yaml").exists() and not Path("lichen_planus.yaml").exists()


def test_no_key_for_openai_stops_at_the_first_class_in_one_line(capsys, work, data):
    code, out, err = vip(capsys, "symptoms", "generate", "--data", data)
    assert code == 1 and err.count("error:") == 1, err
    assert "error: no API key for api.openai.com: $OPENAI_API_KEY is not set" in err
    assert "packs not written" not in err and "written and complete" not in err  # none was written
    assert "psoriasis - not asked: stopped at the endpoint error above" in flat(out)


def test_nothing_to_generate_asks_nothing(capsys, work, tmp_path, llm_server):
    for name in ("melanoma", "nevus"):
        write_class(tmp_path / "isic", name, 2)
    code, out, err = generate(capsys, llm_server, "--data", tmp_path / "isic")
    assert code == 0, err
    assert not llm_server.requests and "nevus nevus shipped (paper: Fang et al., MICCAI 2024)" in flat(out)
    assert "train with them" not in out + err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "packs.yaml"], "with --data, --out must be a folder"),
        (["--disease", "psoriasis"], "--data replaces --disease and --images"),
    ],
)
def test_data_option_mistakes(capsys, work, data, llm_server, args, message):
    code, _, err = generate(capsys, llm_server, "--data", data, *args)
    assert code == 2 and message in err and not llm_server.requests


def test_a_full_out_disk_is_refused_before_any_question(capsys, work, data, llm_server, full_disk):
    llm_server.answer(LICHEN_TEXT).answer(PSORIASIS_TEXT)
    code, _, err = generate(capsys, llm_server, "--data", data, "--text-only", "--out", "packs")
    assert code == 1 and [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: --out packs: the disk holding " f"{work / 'work'} is nearly full: it has 1.0 MiB free, less than the "
        "16.0 MiB vip needs to write there (free some space or choose another --out)"]
    assert not llm_server.requests and not Path("packs").exists()


def test_modality_needed_when_no_other_pack_says_it(capsys, work, tmp_path, llm_server):
    for name in ("psoriasis", "lichen_planus"):
        write_class(tmp_path / "skin", name, 16)
    code, _, err = generate(capsys, llm_server, "--data", tmp_path / "skin")
    assert code == 2 and "--modality is needed to generate packs for 'lichen planus', 'psoriasis'" in err
    assert not llm_server.requests


def test_symptoms_without_data_and_no_classes_at_all_are_usage_errors(capsys, work, llm_server):
    code, _, err = generate(capsys, llm_server, "--symptoms", "melanoma", "--disease", "x")
    assert code == 2 and "--symptoms and --text-only go with --data DIR" in err
    code, _, err = generate(capsys, llm_server)
    assert code == 2 and "--disease NAME (repeatable) or --data DIR" in err


def test_packs_for_a_data_folder_are_not_written_into_one_of_its_class_folders(capsys, work, data, llm_server):
    code, _, err = generate(capsys, llm_server, "--data", data, "--out", data / "train" / "packs")
    assert code == 2 and f"--out {data / 'train' / 'packs'} is inside the data folder {data}" in err
    assert llm_server.requests == [] and not (data / "train" / "packs").exists()


@pytest.mark.parametrize("how", [("--data", "DATA", "--text-only"), ("--disease", "psoriasis"),
                                 ("--disease", "psoriasis", "--disease", "lichen planus")])
def test_packs_are_not_written_into_a_run_directory(capsys, work, data, llm_server, how):
    """Packs in a run directory were passed over by `vip train --symptoms RUN` (the hint `--data` prints), which
    reads the symptoms that run trained on: refused before any question, the run left as it was."""
    import shutil

    run = work / "run"
    shutil.copytree(Path(__file__).parent / "fixtures" / "run-v0.1.0" / "vip", run)
    args = [data if arg == "DATA" else arg for arg in how]
    code, _, err = generate(capsys, llm_server, *args, "--modality", "dermoscopic images", "--out", run)
    assert code == 1 and [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: --out {run} is a run directory of vip train: --symptoms {run} would read the symptoms that run "
        "trained on, not the packs written there (choose another --out for the packs)"]
    assert not llm_server.requests
    assert sorted(path.name for path in run.iterdir()) == ["metrics.json", "model.safetensors", "run.yaml",
                                                           "split.json"]


def test_a_table_answer_makes_a_pack(capsys, work, llm_server):
    llm_server.answer(PSORIASIS_IMAGES)
    code, out, err = generate(capsys, llm_server, "--disease", "psoriasis", "--modality", "dermoscopic images",
                              "--n", "3")
    assert code == 0, err
    assert load_pack("psoriasis.yaml").symptoms == (
        "Color: Red patch with sharp, clear edges", "Scale: Thick white scales on the surface",
        "Vessels: Small red dots spread evenly",
    )


def test_items_naming_another_class_of_the_data_are_removed(capsys, work, data, llm_server):
    """A symptom of one class that names another ("like a typical melanoma") would pull its prompts
    towards that class: it is removed and the removal is shown, as for items naming the class itself."""
    lichen = LICHEN_TEXT.replace("a shiny surface", "melanoma-like dark dots, a shiny surface")
    psoriasis = PSORIASIS_TEXT.replace("- Dry, cracked surface", "- Dry, cracked surface\n- Paler than lichen planus")
    llm_server.answer(lichen).answer(psoriasis)
    code, _, err = generate(capsys, llm_server, "--data", data, "--text-only", "--out", "packs")
    assert code == 0, err
    assert not any("melanoma" in item for item in load_pack("packs/lichen_planus.yaml").symptoms)
    assert "Paler than lichen planus" not in load_pack("packs/psoriasis.yaml").symptoms
    assert "(names another class ('melanoma'))" in err and "(names another class ('lichen planus'))" in err



def test_the_train_command_it_suggests_keeps_paths_with_spaces_whole(capsys, work, tmp_path, llm_server):
    """A data folder or a --symptoms file with a space in its name stays one argument of the printed command."""
    import shlex

    for name in ("melanoma", "nevus"):
        write_class(tmp_path / "my skin", name, 2)
    Path("my packs").mkdir()
    Path("my packs/melanoma.yaml").write_text("name: melanoma\nsymptoms: [Blue-white veil, Dark dots]\n"
                                              "source: {kind: manual}\n")
    code, out, err = generate(capsys, llm_server, "--data", tmp_path / "my skin", "--symptoms", "my packs/melanoma.yaml")
    assert code == 0, err
    line = next(line for line in err.splitlines() if line.startswith("train with them: "))
    assert shlex.split(line.removeprefix("train with them: ")) == [
        "vip", "train", "--data", str(tmp_path / "my skin"), "--symptoms", "my packs/melanoma.yaml"]


def test_a_class_whose_pack_file_would_be_a_windows_device_is_refused_unless_it_has_a_pack(capsys, work, data,
                                                                                            llm_server, tmp_path):
    """A class folder `Aux` got the pack file Aux.yaml: the device AUX on Windows, where the pack folder then broke."""
    for split in ("train", "val", "test"):
        (data / split / "psoriasis").rename(data / split / "Aux")
    code, out, err = generate(capsys, llm_server, "--data", data, "--text-only", "--out", "packs")
    assert (code, out) == (2, "") and [line for line in err.splitlines() if not line.startswith("warning:")] == [
        "error: the pack of class 'Aux' would be the file Aux.yaml, which Windows takes as its device AUX: the pack "
        "folder could not be copied to or opened on Windows (rename the class folder, or give it a pack with "
        "--symptoms)"]
    assert llm_server.requests == [] and not Path("packs").exists()
    given = tmp_path / "aux-pack.yaml"  # a pack of its own: no file is written under the class's name
    given.write_text("name: Aux\nsymptoms: [Red patch with sharp edges, Thick silvery-white scales on top]\n")
    llm_server.answer(LICHEN_TEXT)
    code, _, err = generate(capsys, llm_server, "--data", data, "--text-only", "--out", "packs", "--symptoms", given)
    assert code == 0, err
    assert sorted(p.name for p in Path("packs").iterdir()) == ["lichen_planus.yaml"]
