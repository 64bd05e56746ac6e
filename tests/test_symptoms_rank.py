"""`vip symptoms rank`: symptoms scored on the user's training images with the frozen backbone."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import error_lines
from vipcli.packs import load_pack
from vipcli.symptoms.rank import chance_bound, score_symptoms

USELESS = "A photo of a skin spot"
MELANOMA_PLUS_USELESS = """name: melanoma
symptoms:
  - The spot is asymmetric on both sides
  - The spot has blurry, or jagged edges
  - The spot has multiple colors, like brown, black, blue, red, or white
  - Small, dark areas within the spot
  - A photo of a skin spot
source:
  kind: manual
  note: the paper's four melanoma symptoms and one deliberately useless symptom
"""


@pytest.fixture(scope="module")
def lesions(tmp_path_factory):
    """A small lesion world: 80 training images per class (val and test are not used by rank)."""
    from vipcli.lesion_world import write_dataset

    root = tmp_path_factory.mktemp("lesions")
    write_dataset(root, n_per_class={"train": 80, "val": 2, "test": 2}, seed=0)
    (root / "melanoma_plus_useless.yaml").write_text(MELANOMA_PLUS_USELESS)
    return root


@pytest.fixture(autouse=True)
def shared_feature_cache(isolated_cache, lesions, monkeypatch):
    """One feature cache for this module's tests: the lesion images are encoded once."""
    monkeypatch.setenv("VIP_CACHE_DIR", str(lesions.parent / f"{lesions.name}-cache"))


def rank(cli, lesions, *extra):
    return cli("symptoms", "rank", "--data", lesions, "--backbone", "toy", "--workers", "0", "--device", "cpu",
               "--symptoms", lesions / "melanoma_plus_useless.yaml", *extra)


def test_a_deliberately_useless_symptom_is_flagged_and_a_visible_one_helps(cli, lesions):
    code, out, err = rank(cli, lesions, "--json")
    assert code == 0, err
    document = json.loads(out)
    scores = {(s["class"], s["symptom"]): s for s in document["symptoms"]}
    assert document["training_images"] == {"melanoma": 80, "nevus": 80}
    assert len(scores) == 9  # 5 melanoma (the given pack) + 4 nevus (shipped)
    useless = scores[("melanoma", USELESS)]
    assert not useless["helps"] and useless["verdict"] == "no better than chance"
    assert abs(useless["auroc"] - 0.5) < useless["bound"] - 0.5
    colors = scores[("melanoma", "The spot has multiple colors, like brown, black, blue, red, or white")]
    assert colors["helps"] and colors["auroc"] > 0.75
    melanoma = [s["auroc"] for s in document["symptoms"] if s["class"] == "melanoma"]
    assert melanoma == sorted(melanoma, reverse=True)


def test_the_table_flags_the_symptoms_that_do_not_help(cli, lesions, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = rank(cli, lesions)
    assert code == 0
    assert f"melanoma: '{USELESS}' (no better than chance" in out and "symptoms do not help" in out
    assert "160 training images (melanoma: 80, nevus: 80); backbone toy on cpu" in out


def test_at_80_columns_each_symptom_is_one_line_of_the_table(cli, lesions, monkeypatch):
    """At 80 columns the full table wrapped every row onto 2 to 10 lines, the numbers cut ("0.787-0…"): the table
    now gives each symptom one line (symptom, AUROC, verdict) under a line per class, and each class's bound and
    unrelated reach below it, with what it leaves out and where that is."""
    code, out, err = rank(cli, lesions, "--json")
    assert code == 0, err
    scores = json.loads(out)["symptoms"]
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = rank(cli, lesions)
    assert code == 0, err
    table = out.split("┡", 1)[1].split("└", 1)[0].splitlines()[1:]  # its body, one line per row
    assert max(len(line) for line in out.split("└", 1)[0].splitlines()[1:]) <= 80, out
    rows = [[cell.strip() for cell in line.strip("│").split("│")] for line in table]
    assert len(rows) == len(scores) + 2, out  # 9 symptoms, 2 class lines: no row wrapped onto a second line
    symptom_rows = [row for row in rows if row[1]]
    assert [row[1:] for row in symptom_rows] == [[f"{s['auroc']:.3f}", s["verdict_text"]] for s in scores], out
    assert all(s["symptom"].startswith(row[0].rstrip("…")) for row, s in zip(symptom_rows, scores)), out
    assert [row[0] for row in rows if not row[1]] == ["melanoma", "nevus"], out
    bound = next(s["bound"] for s in scores if s["class"] == "nevus")
    assert f"nevus: bound {bound:.3f}, unrelated " in out and "leaves out each symptom's 95% interval" in out


def test_the_full_table_keeps_its_columns_where_it_fits(cli, lesions, monkeypatch):
    """At 125 columns (README's example) the table is the full one, its numbers each on one line."""
    monkeypatch.setenv("COLUMNS", "125")
    code, out, err = rank(cli, lesions)
    assert code == 0, err
    header = [cell.strip() for cell in out.splitlines()[2].split("┃")[1:-1]]
    assert header == ["class", "symptom", "AUROC", "95% interval", "bound", "unrelated", "Holm p", "verdict"], out
    assert all(len(line) <= 125 for line in out.split("└", 1)[0].splitlines()), out
    assert "leaves out" not in out


def test_without_prune_the_table_ends_with_what_to_do_next(cli, lesions, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = rank(cli, lesions)
    assert code == 0 and err.splitlines()[-1] == (  # a hint: stderr, with the other things that are not results
        "next: add --prune --out DIR to write packs without them (symptoms that help: melanoma 1, nevus none; each "
        "class keeps its best to have 2); write other symptoms for melanoma and nevus, or generate them from the "
        f"images (vip symptoms generate --images {lesions / 'train' / 'melanoma'} ...); check the result with vip "
        "benchmark")
    assert "next: " not in out
    code, out, err = rank(cli, lesions, "--prune", "--out", lesions.parent / "next-pruned")
    assert code == 0 and "next: " not in out + err


@pytest.fixture
def two_each(lesions, tmp_path):
    """2 training images per class: no AUROC, not even 1.0, beats the chance bound (1.031)."""
    import shutil

    for split, count in (("train", 2), ("val", 1), ("test", 1)):
        for name in ("melanoma", "nevus"):
            (tmp_path / "few" / split / name).mkdir(parents=True)
            for image in sorted((lesions / split / name).iterdir())[:count]:
                shutil.copy(image, tmp_path / "few" / split / name)
    return tmp_path / "few"


def test_unreadable_training_images_are_under_unreadable_in_json(cli, two_each):
    """As in `vip train --json` and `vip benchmark --json` (its older name, skipped, kept)."""
    (two_each / "train" / "melanoma" / "broken.png").write_bytes(b"not an image")
    code, out, err = cli("symptoms", "rank", "--data", two_each, "--backbone", "toy", "--workers", "0", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert list(document["unreadable"]) == [str(two_each / "train" / "melanoma" / "broken.png")]
    assert document["skipped"] == document["unreadable"] and "warning: skipped " in err


def test_too_few_images_for_any_verdict_are_told_and_not_pruned_by(cli, two_each, tmp_path, monkeypatch):
    """With 2 images against 2, a symptom of AUROC 1.000 was "no better than chance", and --prune removed symptoms
    on that noise: the verdict is now "too few images to tell", with one warning per class, and --prune is refused
    before any image is encoded."""
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = cli("symptoms", "rank", "--data", two_each, "--backbone", "toy", "--workers", "0", "--json")
    assert code == 0, err
    assert {s["verdict"] for s in json.loads(out)["symptoms"]} == {"too few images to tell"}
    code, out, err = cli("symptoms", "rank", "--data", two_each, "--backbone", "toy", "--workers", "0")
    assert code == 0 and "next: " not in out and error_lines(err) == [] and err.splitlines() == [
        f"warning: {name}: 2 against 2 training images (its own against the other classes') are too few for any "
        "AUROC, not even 1.0, to beat chance with 95% confidence: its verdicts say nothing (add training images: with "
        "16 against 16, a symptom needs an AUROC above 0.67)" for name in ("melanoma", "nevus")]
    monkeypatch.setattr("vipcli.features.encode_images", lambda *a, **k: pytest.fail("encoded images"))
    code, out, err = cli("symptoms", "rank", "--data", two_each, "--backbone", "toy", "--workers", "0", "--prune",
                         "--out", tmp_path / "pruned")
    assert code == 1 and out == "" and err.strip() == (
        "error: too few training images to prune by (melanoma: 2 against 2; nevus: 2 against 2): no AUROC, not even "
        "1.0, beats chance with 95% confidence at these counts (add training images (with 16 against 16, a symptom "
        "needs an AUROC above 0.67), or pass --min-auroc to prune by a bound of your own)")
    assert not (tmp_path / "pruned").exists()


def test_prune_after_unreadable_images_leave_too_few_is_refused_and_writes_nothing():
    from vipcli.errors import VipError
    from vipcli.packs import SymptomPack
    from vipcli.symptoms.rank import RankResult, SymptomScore, prune

    packs = {name: SymptomPack(name, ("a", "b", "c")) for name in ("x", "y")}
    scores = [SymptomScore(name, text, 1.0, chance_bound(2, 2), None, None) for name in packs for text in "abc"]
    result = RankResult(scores=scores, class_names=["x", "y"], packs=packs, counts=[2, 2])
    with pytest.raises(VipError, match=r"^too few training images to prune by \(x: 2 against 2; y: 2 against 2\)"):
        prune(result, Path("data"))


def test_prune_writes_packs_without_the_flagged_symptoms(cli, lesions, tmp_path):
    code, out, err = rank(cli, lesions, "--prune", "--out", tmp_path / "packs", "--json")
    assert code == 0, err
    document = json.loads(out)
    melanoma = load_pack(tmp_path / "packs" / "melanoma.yaml")
    assert USELESS not in melanoma.symptoms and len(melanoma.symptoms) >= 2
    helping = [s["symptom"] for s in document["symptoms"] if s["class"] == "melanoma" and s["helps"]]
    kept_below = [row["symptom"] for row in melanoma.source["pruned"].get("kept_below_bound", [])]
    assert helping and set(melanoma.symptoms) == set(helping) | set(kept_below)  # the floor of two fills up
    removed = [row["symptom"] for row in melanoma.source["pruned"]["removed"]]
    assert USELESS in removed and melanoma.source["kind"] == "manual"
    assert melanoma.source["pruned"]["backbone"]["id"] == "toy"
    assert load_pack(tmp_path / "packs" / "nevus.yaml").name == "nevus"
    code, _, err = rank(cli, lesions, "--prune", "--out", tmp_path / "packs")
    assert code == 1 and "already exists" in err


def test_prune_into_a_read_only_folder_is_refused_before_ranking(cli, lesions, tmp_path, monkeypatch):
    import vipcli.symptoms.rank

    from conftest import read_only_folder, writable_again

    monkeypatch.setattr(vipcli.symptoms.rank, "rank_on_data", lambda *a, **k: pytest.fail("ranked before the check"))
    read_only_folder(tmp_path / "ro")
    try:
        code, _, err = rank(cli, lesions, "--prune", "--out", tmp_path / "ro" / "packs")
    finally:
        writable_again(tmp_path / "ro")
    assert code == 1 and "permission denied" in err


def test_prune_into_a_class_folder_of_the_data_is_refused_before_ranking(cli, lesions, monkeypatch):
    import vipcli.symptoms.rank

    monkeypatch.setattr(vipcli.symptoms.rank, "rank_on_data", lambda *a, **k: pytest.fail("ranked before the check"))
    code, _, err = rank(cli, lesions, "--prune", "--out", lesions / "train" / "packs")
    assert code == 2 and error_lines(err) == [f"error: --out {lesions / 'train' / 'packs'} is inside the data folder "
                                              f"{lesions}, where the next run would read it as a class folder (pass "
                                              f"--out outside {lesions}, or run vip from another folder)"]
    assert not (lesions / "train" / "packs").exists()


def test_prune_into_a_run_directory_is_refused_before_ranking(cli, lesions, tmp_path, monkeypatch):
    """Pruned packs written into a run directory were passed over by the `vip train --symptoms RUN` printed next,
    which reads the symptoms that run trained on (its run.yaml): refused before any image is encoded."""
    import shutil

    import vipcli.symptoms.rank

    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "fixtures" / "run-v0.1.0" / "vip", run)
    monkeypatch.setattr(vipcli.symptoms.rank, "rank_on_data", lambda *a, **k: pytest.fail("ranked before the check"))
    code, _, err = rank(cli, lesions, "--prune", "--out", run)
    assert code == 1 and error_lines(err) == [f"error: --out {run} is a run directory of vip train: --symptoms {run} "
                                              "would read the symptoms that run trained on, not the packs written "
                                              "there (choose another --out for the packs)"]
    assert sorted(path.name for path in run.iterdir()) == ["metrics.json", "model.safetensors", "run.yaml",
                                                           "split.json"]


def test_prune_keeps_at_least_two_symptoms_per_class(cli, lesions, tmp_path):
    code, out, err = rank(cli, lesions, "--min-auroc", "0.99", "--prune", "--out", tmp_path / "strict", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert not any(s["helps"] for s in document["symptoms"])
    for name in ("melanoma", "nevus"):
        pack = load_pack(tmp_path / "strict" / f"{name}.yaml")
        best_two = [s["symptom"] for s in document["symptoms"] if s["class"] == name][:2]
        assert set(pack.symptoms) == set(best_two)
        assert [row["symptom"] for row in pack.source["pruned"]["kept_below_bound"]] == best_two


MELANOMA_WRONG_WAY = """name: melanoma
modality: dermoscopic images
symptoms:
  - The spot has clear, well-defined edges
  - The spot has blurry, or jagged edges
  - The spot is symmetric on both sides
source:
  kind: manual
"""


def test_kept_symptoms_that_point_the_wrong_way_are_warned_about_and_recorded(cli, lesions, tmp_path):
    (tmp_path / "wrong.yaml").write_text(MELANOMA_WRONG_WAY)
    code, out, err = cli("symptoms", "rank", "--data", lesions, "--backbone", "toy", "--workers", "0", "--device",
                         "cpu", "--symptoms", tmp_path / "wrong.yaml", "--prune", "--out", tmp_path / "packs", "--json")
    assert code == 0, err
    document = json.loads(out)
    scores = {(s["class"], s["symptom"]): s for s in document["symptoms"]}
    melanoma = load_pack(tmp_path / "packs" / "melanoma.yaml")
    record = melanoma.source["pruned"]
    wrong = [row["symptom"] for row in record["kept_wrong_way"]]
    assert wrong and set(wrong) <= set(melanoma.symptoms) and len(melanoma.symptoms) == 2  # the floor stays
    for symptom in wrong:
        score = scores[("melanoma", symptom)]
        assert score["auroc"] < 0.5 or score["favours"] is not None
    pruned = {p["class"]: p for p in document["pruned"]}
    assert pruned["melanoma"]["kept_wrong_way"] == wrong
    warnings = [line for line in err.splitlines() if line.startswith("warning: melanoma:")]
    assert len(warnings) == 1  # one line per class, naming the symptoms, their scores and the fix
    line = warnings[0]
    assert "point" in line and "the wrong way" in line
    assert all(repr(symptom) in line and f"AUROC {scores[('melanoma', symptom)]['auroc']:.3f}" in line
               for symptom in wrong)
    assert f"write better symptoms for 'melanoma' in {tmp_path / 'packs' / 'melanoma.yaml'}" in line
    assert ("vip symptoms generate --disease melanoma --modality 'dermoscopic images' --images "
            f"{lesions / 'train' / 'melanoma'} --out {tmp_path / 'packs' / 'melanoma.yaml'} --force") in line
    nevus = load_pack(tmp_path / "packs" / "nevus.yaml").source.get("pruned", {})
    assert bool(nevus.get("kept_wrong_way")) == any(line.startswith("warning: nevus:") for line in err.splitlines())


def test_a_pack_pruned_before_wrong_way_symptoms_were_recorded_still_loads(tmp_path):
    old = MELANOMA_PLUS_USELESS + """  pruned:
    by: vip symptoms rank --prune
    removed: [{symptom: x, auroc: 0.4, verdict: no better than chance}]
    kept_below_bound: [{symptom: A photo of a skin spot, auroc: 0.51, verdict: no better than chance}]
"""
    (tmp_path / "old.yaml").write_text(old)
    assert "kept_wrong_way" not in load_pack(tmp_path / "old.yaml").source["pruned"]


def test_a_symptom_points_the_wrong_way_below_chance_or_when_it_favours_another_class():
    from vipcli.symptoms.rank import SymptomScore

    assert SymptomScore("a", "x", 0.45, 0.6, None, None).points_wrong_way
    assert SymptomScore("a", "x", 0.55, 0.6, "b", 0.2).points_wrong_way
    assert not SymptomScore("a", "x", 0.55, 0.6, None, None).points_wrong_way


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prune"], "--prune needs --out"),
        (["--out", "packs"], "--out is only used with --prune"),
        (["--prune", "--out", "x.yaml"], "--out x.yaml: must be a folder"),
        (["--min-auroc", "0.3"], "--min-auroc 0.3: must be at least 0.5"),
    ],
)
def test_option_mistakes_are_one_usage_line(cli, lesions, args, message):
    code, _, err = rank(cli, lesions, *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_a_symptom_too_long_for_the_text_tower_is_refused_before_any_image_is_encoded(cli, lesions, tmp_path,
                                                                                     monkeypatch):
    import vipcli.features

    monkeypatch.setattr(vipcli.features, "encode_images", lambda *a, **k: pytest.fail("encoded before the check"))
    (tmp_path / "long.yaml").write_text("melanoma:\n  - " + "a dark spot with jagged edges " * 12 + "\n")
    code, _, err = cli("symptoms", "rank", "--data", lesions, "--backbone", "toy", "--workers", "0", "--device", "cpu",
                       "--symptoms", tmp_path / "long.yaml")
    assert code == 1 and len(error_lines(err)) == 1
    assert error_lines(err)[0].startswith("error: prompt too long for the text tower: 'a dark spot")


def test_a_class_without_a_pack_is_named(cli, tmp_path):
    from PIL import Image

    for name in ("melanoma", "psoriasis"):
        (tmp_path / name).mkdir()
        for shade, file in enumerate(("a.png", "b.png", "c.png")):  # three: enough to split off val and test
            Image.new("RGB", (8, 8), (shade * 40, 0, 0)).save(tmp_path / name / file)
    code, _, err = cli("symptoms", "rank", "--data", tmp_path, "--backbone", "toy")
    assert code == 1 and "no symptoms for class 'psoriasis'" in err
    assert f"vip symptoms generate --data {tmp_path}" in err.replace("\n", "")  # the folder given, not DIR


def test_a_symptom_that_matches_another_class_better_is_said_to_favour_it():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 30)
    # column 0 (class a): class b's images score highest, class c's lowest; column 1 (class a): a clean signal
    similarity = np.stack([labels == 1, labels == 0], axis=1) + rng.normal(0, 0.3, (90, 2))
    scores = score_symptoms(similarity, labels, [0, 0], ["odd one", "good one"], ["a", "b", "c"])
    by_text = {s.symptom: s for s in scores}
    assert by_text["good one"].helps and by_text["good one"].favours is None
    assert by_text["odd one"].favours == "b" and by_text["odd one"].verdict == "favours b"
    assert not by_text["odd one"].helps and by_text["odd one"].favours_auroc < 0.5
    assert [s.symptom for s in scores] == ["good one", "odd one"]


def test_the_chance_bound_tightens_with_more_images():
    assert chance_bound(16, 16) > chance_bound(100, 100) > chance_bound(1000, 1000) > 0.5
    assert round(chance_bound(100, 100), 3) == 0.567


def test_pruning_two_classes_that_share_one_pack_is_refused_before_encoding(cli, tmp_path):
    from PIL import Image

    for name in ("bkl", "benign_keratosis"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for shade, file in enumerate(("a.png", "b.png", "c.png")):  # three: enough to split off val and test
            Image.new("RGB", (8, 8), (shade * 40, 0, 0)).save(tmp_path / "data" / name / file)
    code, _, err = cli("symptoms", "rank", "--data", tmp_path / "data", "--backbone", "toy", "--prune",
                       "--out", tmp_path / "out")
    assert code == 2 and "both use the pack 'benign keratosis'" in err and not (tmp_path / "out").exists()


def test_the_train_command_it_prints_runs_on_what_was_ranked(cli, lesions, tmp_path):
    # a --seed other than 1 chose the training split (when vip splits train/ itself), so `vip train` needs it
    # too; a folder with a space in its name stays one argument
    code, out, err = rank(cli, lesions, "--seed", "3", "--prune", "--out", tmp_path / "my packs")
    assert code == 0, err
    assert "train with them" not in out  # a hint: stderr
    line = next(line for line in err.splitlines() if line.startswith("train with them: "))
    argv = shlex.split(line.removeprefix("train with them: "))
    assert argv == ["vip", "train", "--data", str(lesions), "--backbone", "toy", "--seed", "3",
                    "--symptoms", str(tmp_path / "my packs")]


GENERATED_BY_0_1_0 = MELANOMA_PLUS_USELESS.replace("""source:
  kind: manual
  note: the paper's four melanoma symptoms and one deliberately useless symptom
""", """source:
  kind: llm
  model: gpt-4o
  images:
    folder: /data/hospital/patients/melanoma
    files: [MRN-0042-left-arm.jpg, MRN-0077-back.jpg]
    seed: 1
""")


def test_a_pack_of_0_1_0_naming_its_images_is_flagged_and_pruning_drops_the_names(cli, lesions, tmp_path):
    """vip 0.1.0 recorded the full folder path and the file names of a generated pack's images (often
    record numbers); `rank --prune` copied them into the packs it wrote, and `show` said nothing."""
    old = tmp_path / "melanoma_0_1_0.yaml"
    old.write_text(GENERATED_BY_0_1_0)
    code, _, err = cli("symptoms", "show", old)
    assert code == 0 and err.count("warning:") == 1, err
    assert "records the full path and file names of the images" in err and "MRN" not in err
    code, _, err = cli("symptoms", "rank", "--data", lesions, "--backbone", "toy", "--workers", "0", "--device",
                       "cpu", "--symptoms", old, "--prune", "--out", tmp_path / "packs")
    assert code == 0, err
    written = (tmp_path / "packs" / "melanoma.yaml").read_text()
    assert "MRN" not in written and "/data/hospital" not in written
    assert load_pack(tmp_path / "packs" / "melanoma.yaml").source["images"] == {
        "folder": "melanoma", "file_count": 2, "seed": 1}
    assert cli("symptoms", "show", tmp_path / "packs" / "melanoma.yaml")[2].count("warning:") == 0


def test_prune_warns_once_about_a_pack_that_names_its_class(cli, lesions, tmp_path):
    """`--prune` looks at the packs before ranking (to refuse an existing output file early) and again
    when ranking: a pack's warnings were printed twice."""
    named = tmp_path / "melanoma.yaml"
    named.write_text(MELANOMA_PLUS_USELESS.replace("Small, dark areas", "Melanoma-like dark areas"))
    code, _, err = cli("symptoms", "rank", "--data", lesions, "--backbone", "toy", "--workers", "0", "--device", "cpu",
                       "--symptoms", named,
                       "--prune", "--out", tmp_path / "packs")
    assert code == 0, err
    assert err.count("names its class 'melanoma'") == 1, err


def test_the_readmes_inline_symptom_lists_parse_to_whole_symptoms():
    """Every `symptoms: [...]` pack README spells inline is read as whole symptoms, none cut at a comma."""
    import re
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    lists = re.findall(r"`(symptoms: \[[^`]*\])`", readme)
    assert lists, "README spells no inline symptom list"
    for text in lists:
        symptoms = yaml.safe_load(text.replace("\n", " "))["symptoms"]
        fragments = [s for s in symptoms if not s[:1].isupper()]
        assert not fragments, f"{text!r} reads as {symptoms} (quote the symptoms that hold a comma)"


def test_no_next_step_is_suggested_for_symptoms_only_too_few_images_flagged(capsys, monkeypatch):
    """Of three classes, one with 1 training image against 10 (bound 1.02: no verdict) and two whose symptoms all
    help: the flagged symptoms were only the undecided class's, and the ranking still ended "next: reword or replace
    them and rank again", advice on verdicts that say nothing."""
    from vipcli.cli.symptoms_rank import show_ranking
    from vipcli.packs import SymptomPack
    from vipcli.symptoms.rank import RankResult, SymptomScore

    monkeypatch.setenv("COLUMNS", "200")
    counts = {"x": 1, "y": 5, "z": 5}
    packs = {name: SymptomPack(name, ("a", "b")) for name in counts}
    bound = {name: chance_bound(n, sum(counts.values()) - n) for name, n in counts.items()}
    scores = [SymptomScore(name, text, 0.99 if name == "x" else 1.0, bound[name], None, None)
              for name in counts for text in "ab"]
    result = RankResult(scores=scores, class_names=list(counts), packs=packs, counts=list(counts.values()),
                        backbone={"id": "toy"})
    show_ranking(result)
    out, err = capsys.readouterr()
    assert "2 of 6 symptoms do not help:" in out and "too few images to tell" in out
    assert "next: " not in out + err and "warning: x: 1 against 10 training images" in err


def test_prune_refuses_a_pack_whose_file_would_be_a_windows_device_before_encoding(cli, lesions, tmp_path):
    """A pack named `lpt1` was pruned into lpt1.yaml: the device LPT1 on Windows, where the pack folder then broke."""
    device_pack = tmp_path / "lpt1-pack.yaml"
    device_pack.write_text(MELANOMA_PLUS_USELESS.replace("name: melanoma", "name: lpt1\naliases: [melanoma]"))
    code, out, err = cli("symptoms", "rank", "--data", lesions, "--backbone", "toy", "--workers", "0", "--device",
                         "cpu", "--symptoms", device_pack, "--prune", "--out", tmp_path / "pruned")
    assert (code, out) == (2, "") and error_lines(err) == [
        "error: the pruned pack 'lpt1' would be the file lpt1.yaml, which Windows takes as its device LPT1: the pack "
        "folder could not be copied to or opened on Windows (rename the pack (its 'name:') or give the class a pack of "
        "another name with --symptoms)"]
    assert "encoding" not in err and not (tmp_path / "pruned").exists()


MELANOMA_UNRELATED = """name: melanoma
symptoms:
  - A bowl of hot soup
  - A page of printed text
  - The spot is symmetric on both sides
  - Small, dark areas within the spot
"""


def test_text_that_says_nothing_of_the_images_never_helps(cli, lesions, tmp_path, monkeypatch):
    """A melanoma pack of mostly nevus-like and unrelated texts made "A bowl of hot soup" and the nevus symptom
    "The spot is symmetric on both sides" help melanoma (AUROC above the chance bound: each similarity is relative
    to the mean over the ranked symptoms, and almost any text separates images that differ). A symptom now helps
    only if it beats what texts unrelated to the images reach for its class, shown in the table and --json."""
    (tmp_path / "unrelated.yaml").write_text(MELANOMA_UNRELATED)
    args = ("symptoms", "rank", "--data", lesions, "--backbone", "toy", "--workers", "0", "--device", "cpu",
            "--symptoms", tmp_path / "unrelated.yaml")
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    scores = {(s["class"], s["symptom"]): s for s in json.loads(out)["symptoms"]}
    for text in ("A bowl of hot soup", "A page of printed text", "The spot is symmetric on both sides"):
        score = scores[("melanoma", text)]
        assert not score["helps"], score
        assert score["auroc"] <= score["unrelated_auroc"]
        if score["auroc"] > score["bound"] and score["favours"] is None:
            assert score["verdict"] == "no better than unrelated text"
    assert {s["unrelated_auroc"] for (name, _), s in scores.items() if name == "melanoma"} == {
        scores[("melanoma", "A bowl of hot soup")]["unrelated_auroc"]}  # one reach per class
    from vipcli.symptoms.rank import UNRELATED_TEXTS

    assert json.loads(out)["unrelated_texts"] == list(UNRELATED_TEXTS)
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = cli(*args)
    assert code == 0 and "unrelated" in out.splitlines()[2]  # the table's header
    assert "unrelated: how far from chance, either way, 8 texts that say nothing of the images" in out


def test_a_symptom_helps_only_above_what_unrelated_texts_reach():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 60)
    signal = (labels == 0) + rng.normal(0, 0.8, 120)  # [N] a symptom of class a, well above chance
    weaker = (labels == 0) * 0.3 + rng.normal(0, 0.8, 120)  # an unrelated text that separates less
    stronger = (labels == 0) * 3.0 + rng.normal(0, 0.8, 120)  # one that separates more
    for unrelated, helps in ((weaker, True), (stronger, False)):
        [score] = score_symptoms(signal[:, None], labels, [0], ["s"], ["a", "b"], unrelated=unrelated[:, None])
        assert score.auroc > score.bound and score.helps is helps
        assert score.verdict == ("helps" if helps else "no better than unrelated text")


# --- how sure each AUROC is (#32) -------------------------------------------------------------------------


def separated(n_per_class: int, shift: float, seed: int = 0):
    """[2n] labels and [2n, 1] similarities where class 0 sits `shift` standard deviations above class 1."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n_per_class)
    return labels, ((labels == 0) * shift + rng.normal(0, 1, 2 * n_per_class))[:, None]


def test_each_auroc_has_an_interval_that_is_wide_on_few_images_and_narrow_on_many():
    """A symptom that "helps" on 12 images read like one that helps on 1,200: the table gave its AUROC alone."""
    widths = []
    for n in (6, 600):
        labels, similarity = separated(n, 3.0)
        [score] = score_symptoms(similarity, labels, [0], ["s"], ["a", "b"])
        low, high = score.interval
        assert 0 <= low <= score.auroc <= high <= 1
        widths.append(high - low)
    assert widths[0] > 0.25 and widths[1] < 0.05
    labels, similarity = separated(6, 10.0)  # a perfect AUROC on 6 against 6 is not certainty
    [score] = score_symptoms(similarity, labels, [0], ["s"], ["a", "b"])
    assert score.auroc == 1.0 and score.interval[0] < 0.75 and score.interval[1] == 1.0


def test_a_symptom_helps_only_when_its_interval_clears_the_unrelated_texts():
    """Its AUROC a little above what unrelated texts reach was "helps", though the images could not tell the two
    apart; now the low end of its interval must clear them, and the verdict says it is unsure."""
    labels, similarity = separated(100, 0.9)
    for unrelated_shift, helps in ((0.8, False), (0.0, True)):
        _, unrelated = separated(100, unrelated_shift, seed=1)
        [score] = score_symptoms(similarity, labels, [0], ["s"], ["a", "b"], unrelated=unrelated)
        assert score.auroc > score.bound and score.auroc > score.unrelated
        assert score.helps is helps and (score.interval[0] > score.unrelated) is helps
        assert score.verdict == ("helps" if helps else "not clearly above unrelated text")


def test_the_table_and_json_give_each_aurocs_interval(cli, lesions, monkeypatch):
    code, out, err = rank(cli, lesions, "--json")
    assert code == 0, err
    document = json.loads(out)
    for score in document["symptoms"]:
        low, high = score["auroc_interval"]
        assert low <= score["auroc"] <= high and high - low < 0.3
        assert score["helps"] == (score["verdict"] == "helps")
        if score["helps"]:
            assert low > score["unrelated_auroc"]
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = rank(cli, lesions)
    lines = out.splitlines()
    assert code == 0 and "95% interval" in lines[2]
    colors = next(s for s in document["symptoms"] if s["symptom"].startswith("The spot has multiple colors"))
    low, high = colors["auroc_interval"]
    assert f"{colors['auroc']:.3f} │ {low:.3f}-{high:.3f}" in out


# --- --keep K: each class's K best symptoms (#32) ---------------------------------------------------------


def test_keep_writes_each_classs_best_symptoms_and_says_what_it_dropped(cli, lesions, tmp_path):
    code, out, err = rank(cli, lesions, "--keep", "2", "--out", tmp_path / "best", "--json")
    assert code == 0, err
    document = json.loads(out)
    for name in ("melanoma", "nevus"):
        scores = [s for s in document["symptoms"] if s["class"] == name]
        ordered = sorted(scores, key=lambda s: (not s["helps"], -s["auroc"]))
        pack = load_pack(tmp_path / "best" / f"{name}.yaml")
        assert set(pack.symptoms) == {s["symptom"] for s in ordered[:2]}
        dropped = [s["symptom"] for s in ordered[2:]]
        assert pack.source["pruned"]["beyond_keep"] == dropped and pack.source["pruned"]["keep"] == 2
        assert [row["symptom"] for row in pack.source["pruned"]["removed"]] == dropped
        assert next(p for p in document["pruned"] if p["class"] == name)["beyond_keep"] == dropped
    code, out, err = rank(cli, lesions, "--keep", "2", "--out", tmp_path / "again")
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith(f"wrote {tmp_path / 'again' / 'melanoma.yaml'}"))
    assert line.startswith(f"wrote {tmp_path / 'again' / 'melanoma.yaml'}: 2 of 5 symptoms for 'melanoma' (dropped, "
                           "beyond the 2 best: ")
    assert f"{USELESS} (no better than chance, AUROC " in line


def test_keep_with_prune_keeps_at_most_k_of_those_that_help(cli, lesions, tmp_path):
    code, out, err = rank(cli, lesions, "--prune", "--keep", "1", "--out", tmp_path / "one", "--json")
    assert code == 0, err
    document = json.loads(out)
    for name in ("melanoma", "nevus"):
        pack = load_pack(tmp_path / "one" / f"{name}.yaml")
        best = next(s for s in document["symptoms"] if s["class"] == name)
        assert pack.symptoms == (best["symptom"],)


def test_the_packs_being_ranked_are_never_overwritten_even_with_force(cli, lesions, tmp_path):
    (tmp_path / "packs").mkdir()
    mine = tmp_path / "packs" / "melanoma.yaml"
    mine.write_text(MELANOMA_PLUS_USELESS)
    for option in (["--keep", "2"], ["--prune"]):
        code, _, err = cli("symptoms", "rank", "--data", lesions, "--backbone", "toy", "--workers", "0", "--device",
                           "cpu", "--symptoms", tmp_path / "packs", *option, "--out", tmp_path / "packs", "--force")
        assert code == 2 and error_lines(err) == [
            f"error: --out {tmp_path / 'packs'}: {mine} is a pack being ranked, and writing there would replace it "
            "(choose another --out; the packs you rank are never overwritten)"]
        assert mine.read_text() == MELANOMA_PLUS_USELESS and not (tmp_path / "packs" / "nevus.yaml").exists()


@pytest.mark.parametrize("args, message", [
    (["--keep", "2"], "error: --keep needs --out (give a folder for the packs of the 2 best symptoms, e.g. --out "
                      "packs/)"),
    (["--keep", "0", "--out", "packs"], "error: --keep 0: must be at least 1 (give how many symptoms each class "
                                        "keeps, e.g. --keep 3)"),
])
def test_keep_mistakes_are_one_usage_line_before_any_image_is_encoded(cli, lesions, monkeypatch, args, message):
    import vipcli.symptoms.rank

    monkeypatch.setattr(vipcli.symptoms.rank, "rank_on_data", lambda *a, **k: pytest.fail("ranked before the check"))
    code, _, err = rank(cli, lesions, *args)
    assert code == 2 and error_lines(err) == [message]


def shifted(n_positive: int, n_negative: int, shift: float):
    """[N] labels (class 0 first) and [N, 1] similarities: each class evenly over a unit range, class 0's range
    `shift` above class 1's, so the AUROC of class 0 is 1 - (1 - shift)² / 2 (below 0.5 for a negative shift)."""
    labels = np.repeat([0, 1], [n_positive, n_negative])
    values = np.concatenate([np.linspace(0, 1, n_positive) + shift, np.linspace(0, 1, n_negative)])
    return labels, values[:, None]


@pytest.mark.parametrize("shift", [0.031, -0.031])
def test_no_verdict_claims_more_than_the_interval_shows(shift):
    """On ISIC 2017's 374 melanoma against 1,372 nevus training images, "Small, dark areas within the spot" at AUROC
    0.470 (95% interval 0.438-0.503) was said to favour nevus, and a symptom at 0.53 to help: each is past the
    one-sided bound, yet its interval holds 0.5. Each is now no better than chance."""
    labels, similarity = shifted(374, 1372, shift)
    [score] = score_symptoms(similarity, labels, [0], ["s"], ["melanoma", "nevus"])
    low, high = score.interval
    assert abs(score.auroc - 0.5) > score.bound - 0.5 and low < 0.5 < high  # past the bound, its interval holds 0.5
    assert not score.helps and score.favours is None and score.verdict == "no better than chance"
    labels, similarity = shifted(374, 1372, 4 * shift)  # further off chance: the interval clears 0.5
    [score] = score_symptoms(similarity, labels, [0], ["s"], ["melanoma", "nevus"])
    assert score.verdict == ("helps" if shift > 0 else "favours nevus")


# --- statistics a careful user can trust (#33) -------------------------------------------------------------


def test_a_random_weight_backbone_shows_no_symptom_that_helps(cli, lesions, tiny_clip, monkeypatch):
    """A CLIP with random weights showed 'The spot has blurry, or jagged edges' and 'The spot has multiple colors'
    helping melanoma: unrelated texts all fell on nevus's side, and the reach counted only melanoma's side. How far
    from chance they fall, either way, and its bootstrap interval now leave no "helps", and the next step says so."""
    args = ("symptoms", "rank", "--data", lesions, "--backbone", "clip", "--arch", tiny_clip, "--pretrained", "none",
            "--workers", "0", "--device", "cpu", "--symptoms", lesions / "melanoma_plus_useless.yaml")
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    document = json.loads(out)
    assert [s["symptom"] for s in document["symptoms"] if s["helps"]] == []
    assert document["correction"].startswith("Holm's step-down correction across each class's symptoms")
    for score in document["symptoms"]:
        low, high = score["unrelated_interval"]
        assert low <= score["unrelated_auroc"] <= high and score["unrelated_auroc"] >= 0.5
        assert score["p_holm"] >= score["p"]
    code, out, err = cli(*args)
    assert code == 0 and err.splitlines()[-1].startswith("next: no symptom helps on these images, so pruning would "
                                                         "keep noise")


def test_holm_takes_back_helps_that_eight_symptoms_earn_by_chance():
    """Eight symptoms each just past the bound, its interval's low end above 0.5, each "helped": one test per
    symptom. Across a class's symptoms, Holm's correction now keeps the chance of any false "helps" under 5%; one
    clear symptom still helps, and each keeps its raw p beside the corrected one."""
    labels, weak = shifted(100, 100, 0.09)  # AUROC 0.586 on 100 against 100: raw p about 0.02
    _, strong = shifted(100, 100, 0.4)
    similarity = np.concatenate([np.repeat(weak, 8, axis=1), strong], axis=1)
    scores = score_symptoms(similarity, labels, [0] * 9, [f"weak {i}" for i in range(8)] + ["strong"], ["a", "b"])
    weak_scores = [s for s in scores if s.symptom.startswith("weak")]
    assert all(s.passes_before_correction and s.p_value < 0.05 <= s.p_holm for s in weak_scores)
    assert not any(s.helps for s in weak_scores) and all(s.lost_to_correction for s in weak_scores)
    assert all(s.verdict == "no better than chance" for s in weak_scores)  # --json's value, as before
    assert weak_scores[0].verdict_text == "not distinguishable from chance with 200 images"
    [strong_score] = [s for s in scores if s.symptom == "strong"]
    assert strong_score.helps and strong_score.p_holm < 0.05


def test_the_unrelated_reach_has_an_interval_and_the_verdict_carries_it():
    """A symptom whose interval's low end just cleared the unrelated texts' reach "helped", though the reach, the
    best of 8 texts on 200 images, is uncertain too. A paired bootstrap (fixed seed) now tests the symptom against
    the reach on the same resampled images."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    unrelated = (labels == 0)[:, None] * 0.5 + rng.normal(0, 1, (200, 8))
    similarity = ((labels == 0) * 1.15 + rng.normal(0, 1, 200))[:, None]
    [score] = score_symptoms(similarity, labels, [0], ["s"], ["a", "b"], unrelated=unrelated)
    low, high = score.unrelated_interval
    assert low < score.unrelated < high and score.interval[0] > score.unrelated  # clears the reach's point
    assert score.p_unrelated > 0.05 and not score.helps and score.verdict == "not clearly above unrelated text"
    [again] = score_symptoms(similarity, labels, [0], ["s"], ["a", "b"], unrelated=unrelated)
    assert again == score  # the same images give the same interval and p


def test_an_auroc_past_the_bound_whose_interval_holds_chance_reads_not_distinguishable():
    """0.53 on 374 against 1,372 images is past the bound, yet its interval holds 0.5: the table said "no better
    than chance" beside an AUROC above the bound."""
    labels, similarity = shifted(374, 1372, 0.031)
    [score] = score_symptoms(similarity, labels, [0], ["s"], ["melanoma", "nevus"])
    assert score.auroc > score.bound and score.verdict == "no better than chance"
    assert score.verdict_text == "not distinguishable from chance with 1746 images"


def test_an_auroc_below_chance_whose_interval_excludes_it_is_not_called_indistinguishable_from_chance():
    """Class a's 300 images match the symptom less than each of 8 other classes' 40 (AUROC 0.443, 95% interval
    0.399-0.488: below chance, yet no one class significantly favoured). The table said "not distinguishable from
    chance with 620 images", which its own interval contradicts; it reads "no better than chance", as --json's
    verdict does."""
    labels = np.repeat(np.arange(9), [300] + [40] * 8)
    similarity = np.concatenate([np.linspace(0, 1, 300) - 0.06] + [np.linspace(0, 1, 40)] * 8)[:, None]
    [score] = score_symptoms(similarity, labels, [0], ["s"], list("abcdefghi"))
    assert score.favours is None and score.auroc < 1 - score.bound and score.interval[1] < 0.5
    assert score.verdict == "no better than chance" and score.points_wrong_way
    assert score.verdict_text == "no better than chance"


def test_a_class_of_sixty_clear_symptoms_still_has_symptoms_that_help():
    """The paired bootstrap against the unrelated texts gives no p below 1 / 1,001, and Holm's correction multiplied
    it by the class's symptom count: of 60 symptoms each at AUROC 1.0, with unrelated texts at chance, none helped
    (Holm p 0.060 at best, "not clearly above unrelated text"). A class of many symptoms now gets resamples enough:
    every one helps, and --json names the count."""
    from vipcli.cli.symptoms_rank import rank_document
    from vipcli.symptoms.rank import RankResult

    labels = np.repeat([0, 1], 30)
    rng = np.random.default_rng(0)
    similarity = (labels == 0)[:, None] * 5.0 + rng.normal(0, 0.1, (60, 60))
    unrelated = rng.normal(0, 1, (60, 8))
    scores = score_symptoms(similarity, labels, [0] * 60, [f"s{i}" for i in range(60)], ["a", "b"],
                            unrelated=unrelated)
    assert all(score.auroc == 1.0 and score.unrelated < score.low for score in scores)
    assert all(score.helps and score.p_holm < 0.05 for score in scores)
    document = rank_document(RankResult(scores=scores, class_names=["a", "b"], packs={}, counts=[30, 30]), [], {})
    assert "2400 class-stratified bootstrap resamples" in document["unrelated_interval"]


def test_the_next_step_fits_the_ranking():
    """The hint after the table named --prune whatever the ranking: also when nothing helped (pruning then keeps
    noise) and when every class had symptoms enough that help."""
    from vipcli.cli.symptoms_rank import next_step
    from vipcli.symptoms.rank import RankResult

    labels, good = shifted(100, 100, 0.4)
    _, useless = shifted(100, 100, 0.0)
    similarity = np.concatenate([good, good, useless, -good, -good], axis=1)  # class b's are class a's mirrored
    scores = score_symptoms(similarity, labels, [0, 0, 0, 1, 1], ["a1", "a2", "a3", "b1", "b2"], ["a", "b"])
    result = RankResult(scores=scores, class_names=["a", "b"], packs={}, counts=[100, 100])
    assert next_step(result).startswith("next: add --prune --out DIR to write packs of only the symptoms that help "
                                        "(each class has at least 2), or --keep K --out DIR")
    none_help = score_symptoms(np.repeat(useless, 5, axis=1), labels, [0, 0, 0, 1, 1], list("vwxyz"), ["a", "b"])
    assert next_step(replace(result, scores=none_help)).startswith("next: no symptom helps on these images")


# --- verdicts that never contradict each other (#34) ---------------------------------------------------------


def test_a_holm_p_under_005_beside_another_verdict_says_which_test_failed(capsys):
    """The unrelated texts track the symptom image by image, a little weaker: the paired bootstrap puts it above their
    reach (Holm p <0.001), but the low end of its interval does not clear that reach. The table printed the p, "(helps:
    under 0.05)" and "not clearly above unrelated text" together; now the rule is one, the line names the test it
    failed, and --json lists it."""
    from vipcli.cli.symptoms_rank import rank_document, show_ranking
    from vipcli.symptoms.rank import RULE, RankResult

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    noise = rng.normal(0, 1, 200)
    similarity = ((labels == 0) * 1.0 + noise)[:, None]
    unrelated = (labels == 0)[:, None] * 0.8 + noise[:, None] + rng.normal(0, 0.2, (200, 8))
    [score] = score_symptoms(similarity, labels, [0], ["s"], ["a", "b"], unrelated=unrelated)
    assert score.p_holm < 0.05 and score.low <= score.unrelated  # significant, yet not clearly above the reach
    assert not score.helps and score.failed_tests == ("unrelated",)
    assert score.verdict == "not clearly above unrelated text"
    result = RankResult(scores=[score], class_names=["a", "b"], packs={}, counts=[100, 100], backbone={"id": "toy"})
    show_ranking(result, pruning=True)
    out = " ".join(capsys.readouterr().out.split())  # the table's legend wraps
    assert "(helps: under 0.05)" not in out and " ".join(RULE.split()) in out
    assert (f"'s' (not clearly above unrelated text, AUROC {score.auroc:.3f}, 95% interval {score.low:.3f}-"
            f"{score.interval[1]:.3f}, Holm p <0.001 under 0.05, but the low end of its 95% interval, {score.low:.3f}, "
            f"is not above the unrelated texts' reach, {score.unrelated:.3f})") in out
    [row] = rank_document(result, [], {})["symptoms"]
    assert row["failed"] == ["unrelated"] and row["helps"] is False and row["p_holm"] < 0.05


@pytest.mark.parametrize("shift", [0.05, 0.09, 0.15, 0.4])
@pytest.mark.parametrize("unrelated_shift", [None, 0.3, 0.9])
def test_every_verdict_is_the_first_test_of_the_rule_it_fails(shift, unrelated_shift):
    """helps exactly when no test fails; a Holm p under 0.05 beside another verdict always has a failed test before
    the correction; the verdict follows the first failed test."""
    labels, one = shifted(100, 100, shift)
    similarity = np.concatenate([one, one + 0.01 * np.arange(200)[:, None] % 0.05, -one], axis=1)  # [200, 3]
    unrelated = None if unrelated_shift is None else separated(100, unrelated_shift, seed=2)[1].repeat(2, axis=1)
    scores = score_symptoms(similarity, labels, [0, 0, 1], ["x", "y", "z"], ["a", "b"], unrelated=unrelated)
    for score in scores:
        assert score.helps is (score.failed_tests == ()) is (score.verdict == "helps")
        if not score.helps:
            first_words = {"favours": "favours", "chance": "no better than chance", "correction": "",
                           "unrelated": "unrelated text" if score.unrelated else "no better than chance"}
            assert first_words[score.failed_tests[0]] in score.verdict
            if score.p_holm < 0.05:
                assert "correction" not in score.failed_tests


def test_the_unrelated_reach_lies_inside_its_own_interval():
    """On 30 images against 30, the unrelated texts' reach was 0.566 and its 95% interval 0.577-0.728: a largest
    |AUROC - 0.5| over 8 texts runs higher on bootstrap resamples than on the images themselves. The interval is now
    centred on the estimate, with the bootstrap's spread on either side."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 30)
    unrelated = rng.normal(0, 1, (60, 8))
    similarity = ((labels == 0) * 1.0 + rng.normal(0, 1, 60))[:, None]
    [score] = score_symptoms(similarity, labels, [0], ["s"], ["a", "b"], unrelated=unrelated)
    low, high = score.unrelated_interval
    assert round(score.unrelated, 3) == 0.566
    assert 0.5 <= low <= score.unrelated <= high <= 1 and high - low > 0.1  # a real spread, not a point


def test_favours_claims_are_holm_corrected_like_helps(capsys):
    """Eight symptoms each just matched class b's images better than class a's (AUROC 0.419, raw p 0.023, interval
    below 0.5): each "favoured b", with no correction for the eight tests. Holm's correction across the class's
    pairwise tests now takes them back; a clear one still favours b, and the line says what the correction took."""
    from vipcli.cli.symptoms_rank import rank_document, show_ranking
    from vipcli.symptoms.rank import RankResult

    labels, weak = shifted(100, 100, -0.09)
    _, strong = shifted(100, 100, -0.4)
    similarity = np.concatenate([np.repeat(weak, 8, axis=1), strong], axis=1)  # [200, 9]
    scores = score_symptoms(similarity, labels, [0] * 9, [f"weak {i}" for i in range(8)] + ["strong"], ["a", "b"])
    weak_scores = [s for s in scores if s.symptom.startswith("weak")]
    assert all(s.interval[1] < 0.5 and s.favours_p < 0.05 <= s.favours_p_holm for s in weak_scores)
    assert all(s.favours is None and s.favours_before_correction == "b" for s in weak_scores)
    assert all(s.verdict == "no better than chance" and s.points_wrong_way for s in weak_scores)
    [strong_score] = [s for s in scores if s.symptom == "strong"]
    assert strong_score.favours == "b" and strong_score.favours_p_holm < 0.05
    result = RankResult(scores=scores, class_names=["a", "b"], packs={}, counts=[100, 100], backbone={"id": "toy"})
    show_ranking(result, pruning=True)
    out = capsys.readouterr().out
    assert (f"'weak 0' (no better than chance, AUROC {weak_scores[0].auroc:.3f}, 95% interval {weak_scores[0].low:.3f}-"
            f"{weak_scores[0].interval[1]:.3f}, favours b on its own (p {weak_scores[0].favours_p:.3f}), not after Holm's "
            f"correction for a's 9 pairwise tests ({weak_scores[0].favours_p_holm:.3f}))") in out
    row = next(r for r in rank_document(result, [], {})["symptoms"] if r["symptom"] == "weak 0")
    assert row["favours"] is None and row["favours_before_correction"] == "b" and row["favours_p_holm"] >= 0.05
