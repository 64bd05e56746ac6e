"""`vip train` on realistic data mistakes: a class missing from val, --shots above a class's images,
unreadable shots, and the random-weights warning under torchrun (README "Train on your own images")."""

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import error_lines, tiny_train_args


def test_class_with_no_val_images_is_warned_before_encoding(cli, isic_small, tiny_clip, tmp_path):
    shutil.rmtree(isic_small / "val" / "melanoma")
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))
    assert code == 0
    warnings = [line for line in err.splitlines() if "no val images" in line]
    assert warnings == ["warning: class 'melanoma' has no val images: checkpoint selection and calibration never "
                        "see it (add images to its val folder, or remove val/ and vip carves one from train/)"]
    assert "no test images" not in err


def test_shots_above_a_class_are_warned_once_and_recorded(cli, isic_small, tiny_clip, tmp_path):
    import json

    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--shots", "9"))
    assert code == 0
    short = [line for line in err.splitlines() if "--shots 9" in line]
    assert short == [f"warning: --shots 9: class '{name}' has only 6 training images; all 6 are used "
                     "(pass --shots 6 or fewer for equal classes)" for name in ("melanoma", "nevus")]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["shortfalls"] == {"melanoma": 6, "nevus": 6}


def test_shots_lost_to_unreadable_files_are_warned(cli, isic_small, tiny_clip, tmp_path):
    for i in range(2):
        (isic_small / "train" / "melanoma" / f"broken{i}.jpg").write_bytes(f"not an image {i}".encode())
    code, out, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--shots", "7", "--json"))
    assert code == 0
    document = json.loads(out)  # the unreadable files under "unreadable", as in `vip benchmark --json`
    assert sorted(Path(path).name for path in document["unreadable"]) == ["broken0.jpg", "broken1.jpg"]
    assert document["skipped"] == document["unreadable"]  # the older name, kept
    lines = err.splitlines()
    assert "warning: --shots 7: class 'melanoma' has only 6 readable training images; used 6 (the unreadable " \
           "ones are listed below)" in lines
    assert "warning: --shots 7: class 'nevus' has only 6 training images; all 6 are used (pass --shots 6 or " \
           "fewer for equal classes)" in lines
    assert sum("skipped" in line and "broken" in line for line in lines) == 2


@pytest.mark.parametrize("command", ["train", "benchmark"])
def test_a_class_whose_test_images_are_all_unreadable_is_warned_about(cli, isic_small, tiny_clip, tmp_path, command):
    """Its test figures were measured on the other class alone, with no word but the skipped files."""
    for image in (isic_small / "test" / "melanoma").iterdir():
        image.write_bytes(b"not an image")
    args = tiny_train_args(isic_small, tiny_clip, tmp_path / "run")
    if command == "benchmark":
        args = ["benchmark", *args[1:args.index("--shots")], "--methods", "linear-probe", "--shots", "2",
                "--seeds", "1", "--out", tmp_path / "bench"]
    code, _, err = cli(*args)
    warnings = [line for line in err.splitlines() if "could be read" in line]
    assert warnings == ["warning: class 'melanoma': none of its 4 test images could be read: its test figures "
                        "cannot be measured (the unreadable ones are listed below)"], err
    assert code == 0  # a warning: the run goes on with the images that could be read


def test_enough_images_give_no_data_warnings(cli, isic_small, tiny_clip, tmp_path):
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))
    assert code == 0
    assert "--shots 4:" not in err and "no val images" not in err and "no test images" not in err


def test_random_weights_warning_only_on_rank_0(monkeypatch, tiny_clip, capsys):
    from vipcli.registry import load_backbone

    for rank, expected in (("0", 1), ("1", 0)):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", rank)
        load_backbone("clip", str(tiny_clip), "none", check=False, warn_random=True)
        assert capsys.readouterr().err.count("has random weights") == expected


def test_force_never_deletes_a_folder_that_is_not_a_run(cli, isic_small, tiny_clip, tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep")
    for out in (precious, isic_small):  # a folder of the user's, and the data itself
        code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, out, "--force"))
        assert code == 1
        assert err.strip().splitlines()[-1] == (
            f"error: --out {out} is a folder that holds other files than a vip run (no run.yaml or "
            "model.safetensors), which --force would delete (choose another --out)")
    assert (precious / "notes.txt").read_text() == "keep"
    assert len(list((isic_small / "train" / "melanoma").glob("*.jpg"))) == 6


def test_force_replaces_a_run_directory(cli, isic_small, tiny_clip, tmp_path):
    out = tmp_path / "run"
    assert cli(*tiny_train_args(isic_small, tiny_clip, out))[0] == 0
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, out, "--force"))
    assert code == 0, err
    assert (out / "run.yaml").is_file()


def test_data_one_level_off_names_the_folder_to_pass(cli, isic_small, tiny_clip, tmp_path):
    nested = tmp_path / "export"
    shutil.copytree(isic_small / "train", nested / "images")
    code, _, err = cli(*tiny_train_args(nested, tiny_clip, tmp_path / "run"))
    assert code == 1 and err.strip() == (f"error: {nested}: found only 'images'; ViP needs at least two classes "
                                        f"(its class folders seem to be in {nested / 'images'}: pass --data "
                                        f"{nested / 'images'})")
    one_class = isic_small / "train" / "melanoma"
    code, _, err = cli(*tiny_train_args(one_class, tiny_clip, tmp_path / "run"))
    assert code == 1 and err.strip() == (f"error: {one_class}: found no class folders; ViP needs at least two "
                                        f"classes ({one_class} holds images, not class folders: is it one class? "
                                        f"pass --data {isic_small}; are their classes in a labels table (ISIC, "
                                        f"HAM10000)? sort them into class folders with `vip data sort LABELS.csv "
                                        f"--images {one_class} --out DIR`)")


def test_a_labels_table_given_as_data_or_beside_the_images_names_the_vip_data_sort_command(cli, isic_small,
                                                                                          tiny_clip, tmp_path):
    """A download of one flat folder and its labels CSV: `--data labels.csv` said only to pass a folder, and the
    folder itself named a made-up LABELS.csv though the table lay beside the images."""
    flat = tmp_path / "download"
    shutil.copytree(isic_small / "train" / "melanoma", flat)
    table = flat / "labels.csv"
    table.write_text("image,label\n" + "".join(f"{p.name},melanoma\n" for p in sorted(flat.iterdir())))
    code, _, err = cli(*tiny_train_args(table, tiny_clip, tmp_path / "run"))
    assert code == 1 and error_lines(err) == [
        f"error: --data {table} is a file, not a folder (vip reads classes from folders, not from a labels table: sort "
        f"the images it names into one folder per class with `vip data sort {table} --images IMAGES --out SORTED` "
        "(IMAGES: the folder holding them), then pass --data SORTED; or pass --data DIR with one subfolder per class)"]
    code, _, err = cli(*tiny_train_args(flat, tiny_clip, tmp_path / "run"))
    assert code == 1 and f"`vip data sort {table} --images {flat} --out DIR`" in err and "LABELS.csv" not in err


@pytest.mark.parametrize("splits, found, fate, renames", [
    (("train", "validation", "test"), "validation/", "leave unread", "validation/ to val/"),
    (("train", "valid", "test"), "valid/", "leave unread", "valid/ to val/"),
    (("Training", "Testing"), "Testing/, Training/", "read as classes", "Testing/ to test/, Training/ to train/"),
])
def test_split_folders_named_otherwise_are_named_with_the_name_to_give_them(cli, isic_small, tiny_clip, tmp_path,
                                                                              splits, found, fate, renames):
    """Roboflow's valid/ and others' validation/ beside train/ were left unread without a word (vip carved its
    own val from train/); Kaggle's Training/ and Testing/ became two classes, refused for having no symptoms."""
    data = tmp_path / "data"
    for split, source in zip(splits, ("train", "val", "test")):
        shutil.copytree(isic_small / source, data / split)
    code, _, err = cli(*tiny_train_args(data, tiny_clip, tmp_path / "run"))
    assert code == 1 and error_lines(err) == [
        f"error: {data}: split folders must be named train/, val/ and test/; found {found}, which vip would {fate} "
        f"(rename {renames})"]


def test_a_class_folder_of_files_vip_does_not_read_names_them_and_the_fix_not_an_empty_folder(cli, isic_small,
                                                                                              tiny_clip, tmp_path):
    """A class of GIFs, or of a PACS's DICOM exports without a suffix, was refused as if the folder were empty
    ("has no images (add images ... or remove the folder)"), though it was full of the user's images."""
    data = tmp_path / "data"
    shutil.copytree(isic_small / "train" / "melanoma", data / "melanoma")
    (data / "nevus").mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32)).save(data / "nevus" / f"{i}.gif")
    code, _, err = cli(*tiny_train_args(data, tiny_clip, tmp_path / "run"))
    assert code == 1 and error_lines(err) == [
        f"error: class folder {data / 'nevus'} has no image vip reads (jpg, jpeg, png, bmp, tif, tiff, webp, dcm, "
        "dicom), only 3 other files: 0.gif, 1.gif, 2.gif (convert images of other formats to PNG, and move other "
        "files out of the image folders)"]
    shutil.rmtree(data / "nevus")
    (data / "nevus").mkdir()
    for name in ("IM000001", "IM000002"):
        (data / "nevus" / name).write_bytes(bytes(128) + b"DICM" + bytes(64))  # a DICOM file's preamble and marker
    code, _, err = cli(*tiny_train_args(data, tiny_clip, tmp_path / "run"))
    assert code == 1 and error_lines(err) == [
        f"error: class folder {data / 'nevus'} has no image vip reads (jpg, jpeg, png, bmp, tif, tiff, webp, dcm, "
        "dicom), only 2 other files: IM000001, IM000002 (2 look like DICOM files without a .dcm suffix: rename them "
        "to .dcm)"]


def test_train_help_shows_the_symptoms_mapping_and_what_force_replaces(cli):
    code, out, _ = cli("train", "--help")
    text = " ".join(out.replace("│", " ").split())
    assert code == 0
    assert "{class: [symptoms]} YAML file" in text  # not eaten as rich markup
    assert "Replace --out if it is a run directory" in text


@pytest.mark.parametrize("extra, message", [
    (["--lr", "nan"], "error: --lr must be a positive number, got nan"),
    (["--lr", "inf"], "error: --lr must be a positive number, got inf"),
    (["--method", "clap", "-o", "lr=nan"], "error: --method-option lr: expected a finite number, got 'nan' "
                                          "(pass a finite number, such as --method-option lr=0.1)"),
])
def test_a_learning_rate_that_is_not_a_number_is_refused_before_any_work(cli, isic_small, tiny_clip, tmp_path,
                                                                        extra, message):
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", *extra))
    assert code == 2 and error_lines(err) == [message] and "encoded" not in err
    assert not (tmp_path / "run").exists()


def test_a_diverged_training_is_one_clear_line_and_no_run(cli, isic_small, tiny_clip, tmp_path):
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--method", "clap", "-o", "lr=1e30"))
    assert code == 1 and error_lines(err) == [
        "error: the trained model scores images as nan or infinity (training diverged) (lower the learning rate "
        "(--lr, or the method's -o lr=...))"]
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_a_built_in_method_whose_loss_diverges_is_told_to_lower_the_learning_rate(cli, isic_small, tiny_clip,
                                                                                   tmp_path):
    """A NaN loss of vip's own methods is the schedule's, not a plugin fault to report."""
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--method", "coop", "--lr", "1e30"))
    [line] = error_lines(err)
    assert code == 1 and line.startswith("error: training diverged: the training loss is nan at epoch ")
    assert line.endswith("(lower the learning rate (--lr, or the method's -o lr=...))") and "plugin" not in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64])
def test_a_seed_a_seeded_library_cannot_take_is_a_usage_error(cli, isic_small, tiny_clip, tmp_path, seed):
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--seed", str(seed)))
    assert code == 2 and f"{seed} is outside 0..4294967295" in err and "Traceback" not in err
    code, _, err = cli("benchmark", "--data", isic_small, "--seeds", f"1,{seed}", "--out", tmp_path / "bench")
    assert code == 2 and f"{seed} is outside 0..4294967295" in err and not (tmp_path / "bench").exists()
    code, _, err = cli("demo", "--seed", str(seed), "--out", tmp_path / "demo")
    assert code == 2 and f"{seed} is outside" in err and not (tmp_path / "demo").exists()


def test_workers_above_the_usable_cores_are_lowered_with_one_warning(monkeypatch, capsys):
    import os

    from vipcli import settings

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(settings, "_capped_warned", set())
    assert settings.usable_workers(0) == 0 and settings.usable_workers(2) == 2
    assert settings.usable_workers(999) == 2 and settings.usable_workers(999) == 2
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: --workers 999: this machine has 2 usable core(s); using 2 decoding worker(s)"]


@pytest.mark.parametrize("cores, processes, workers", [(2, 1, 2), (2, 2, 1), (16, 2, 7), (16, 4, 3), (64, 2, 16)])
def test_the_default_workers_under_torchrun_are_each_processs_share_less_one_and_at_least_one(monkeypatch, cores,
                                                                                            processes, workers):
    """README (Clusters): each process's share of the cores, less one, and at least one (2 processes on 2 cores: 1)."""
    import os

    from vipcli import settings

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(processes))
    assert settings.default_workers() == workers


def test_an_empty_item_in_a_list_option_is_a_usage_error(cli, tmp_path):
    code, _, err = cli("benchmark", "--data", tmp_path, "--shots", "1,,2", "--out", tmp_path / "bench")
    assert code == 2 and error_lines(err) == ["error: --shots 1,,2: an empty item between commas (e.g. --shots 1,2)"]


@pytest.mark.parametrize("option, example", [("--methods", "coop,vip (vip methods list)"), ("--shots", "1,4,16"),
                                             ("--seeds", "1,2,3")])
def test_a_list_option_given_no_value_says_what_to_give(cli, tmp_path, option, example):
    """`--methods ""` (an unset shell variable) said only "--methods needs at least one value, got ''"."""
    code, _, err = cli("benchmark", "--data", tmp_path, option, "", "--out", tmp_path / "bench")
    assert code == 2 and error_lines(err) == [f"error: {option} needs at least one value, got '' (e.g. {option} "
                                              f"{example}, or leave it out for its default)"]


def test_a_value_listed_twice_is_a_usage_error_not_silently_dropped(cli, tmp_path):
    """'--seeds 1,1' ran seed 1 once and showed no spread; a typo for 1,2 is the likelier reading."""
    code, _, err = cli("benchmark", "--data", tmp_path, "--seeds", "1,1,3", "--out", tmp_path / "bench")
    assert code == 2 and error_lines(err) == [
        "error: --seeds 1,1,3: 1 is listed more than once (list each value once, e.g. --seeds 1,3)"]
    code, _, err = cli("benchmark", "--data", tmp_path, "--shots", "all,4,ALL", "--out", tmp_path / "bench")
    assert code == 2 and error_lines(err) == [
        "error: --shots all,4,ALL: all is listed more than once (list each value once, e.g. --shots all,4)"]
    assert not (tmp_path / "bench").exists()


@pytest.mark.parametrize("command", ["train", "benchmark", "symptoms rank"])
def test_a_symptom_source_given_twice_is_a_usage_error_not_silently_read_twice(cli, tmp_path, command):
    """`--symptoms melanoma --symptoms melanoma` trained as if given once, while `--seeds 1,1` is refused: the
    same slip (for another pack), now refused the same way, before the data folder is read."""
    for first, again, line in (
            ("melanoma", "melanoma", "error: --symptoms 'melanoma' is given twice (give each source once)"),
            ("packs/a.yaml", "./packs//a.yaml", "error: --symptoms './packs//a.yaml' is given twice (as 'packs/a.yaml') "
                                                "(give each source once)")):
        out = [] if command == "symptoms rank" else ["--out", tmp_path / "out"]  # rank: --out only with --prune
        code, _, err = cli(*command.split(), "--data", tmp_path / "none", "--backbone", "toy", "--symptoms", first,
                           "--symptoms", "nevus", "--symptoms", again, *out)
        assert code == 2 and error_lines(err) == [line], err
    assert not (tmp_path / "out").exists()


def test_the_list_and_shots_parsers_of_vip_0_1_0_are_still_importable_where_they_were():
    """vip 0.1.0 defined parse_list in vipcli.cli.benchmark and parse_shots in vipcli.cli.train; code that imports
    them from there keeps working (they live in vipcli.cli.options now)."""
    from vipcli.cli.benchmark import parse_list
    from vipcli.cli.train import parse_shots

    assert parse_list("--shots", "all,4", parse_shots) == (None, 4)


def test_seeds_may_be_given_as_a_range(cli, tmp_path):
    """'--seeds 1-10', as a sweep of ten seeds is written almost everywhere, was refused ("expected a
    comma-separated list of numbers", no example): ten seeds had to be typed out."""
    from vipcli.cli.options import parse_list, seed_range, seed_value

    assert parse_list("--seeds", "1-5", seed_value, seed_range) == (1, 2, 3, 4, 5)
    assert parse_list("--seeds", "1-3, 7,9 - 10", seed_value, seed_range) == (1, 2, 3, 7, 9, 10)
    assert parse_list("--seeds", "4-4", seed_value, seed_range) == (4,)
    for value, line in (
            ("3-1", "error: --seeds 3-1: expected a comma-separated list of numbers (the range 3-1 runs backwards) "
                    "(e.g. --seeds 1,2,3 or --seeds 1-5)"),
            ("1-3,2", "error: --seeds 1-3,2: 2 is listed more than once (list each value once, e.g. --seeds 1,2,3)"),
            ("1..3", "error: --seeds 1..3: expected a comma-separated list of numbers (e.g. --seeds 1,2,3 or "
                     "--seeds 1-5)"),
            ("1-5000", "error: --seeds 1-5000: expected a comma-separated list of numbers (the range 1-5000 names "
                       "5000 seeds, more than 1000) (e.g. --seeds 1,2,3 or --seeds 1-5)")):
        code, _, err = cli("benchmark", "--data", tmp_path, "--seeds", value, "--out", tmp_path / "bench")
        assert code == 2 and error_lines(err) == [line], err
    code, _, err = cli("benchmark", "--data", tmp_path, "--speed", "--seeds", "1-3", "--out", tmp_path / "bench")
    assert code == 2 and error_lines(err) == ["error: --speed times one seed (pass a single --seeds value)"]
    assert not (tmp_path / "bench").exists()


def test_speed_counts_the_seeds_a_range_names_not_its_dash(cli, tmp_path):
    """`--speed` decided "several seeds" by a '-' in --seeds: `--seeds 4-4` (one seed) was refused as "--speed
    times one seed", and `--seeds=-1` said so too instead of that -1 is no seed."""
    code, _, err = cli("benchmark", "--data", tmp_path / "none", "--speed", "--seeds", "4-4", "--out", tmp_path / "b")
    assert code == 1 and error_lines(err)[0].startswith("error: data folder not found"), err
    code, _, err = cli("benchmark", "--data", tmp_path / "none", "--speed", "--seeds=-1", "--out", tmp_path / "b")
    assert code == 2 and error_lines(err) == ["error: --seeds -1: expected a comma-separated list of numbers (-1 is "
                                              "outside 0..4294967295) (e.g. --seeds 1,2,3 or --seeds 1-5)"], err

def test_predict_force_without_out_is_a_usage_error(cli, tmp_path):
    code, _, err = cli("predict", tmp_path, "--model", tmp_path / "run", "--force")
    assert code == 2 and error_lines(err) == [
        "error: --force starts an --out file afresh, and no --out was given (add --out FILE, or leave out --force)"]


def test_views_whose_features_would_not_fit_in_memory_are_refused_before_encoding(cli, isic_small, tiny_clip,
                                                                                  tmp_path, monkeypatch):
    """The features kept in memory: 16 val/test center views and 8 training images x --views, 32 floats each."""
    import vipcli.preflight

    monkeypatch.setattr(vipcli.preflight, "physical_memory", lambda: 2 * (16 + 8 * 1) * 32 * 4)  # room for --views 1
    monkeypatch.setattr(vipcli.preflight, "check_decoding_memory", lambda *args: None)  # the features' check alone:
    # in 6 KiB the decoded pixels of a group of views would not fit either (test_train_predict checks them)
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))  # --views 2
    assert code == 1 and "encoded" not in err
    [line] = error_lines(err)
    assert line.startswith("error: the features of 24 images (2 augmented views each for 8 of them) would take")
    assert line.endswith("(pass --views 1 or fewer)")
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--views", "1"))
    assert code == 0, err  # the fix it names works
    monkeypatch.setattr(vipcli.preflight, "physical_memory", lambda: 1024)
    code, _, err = cli("benchmark", "--data", isic_small, "--arch", tiny_clip, "--pretrained", "none", "--views", "2",
                       "--out", tmp_path / "bench", "--device", "cpu", "--workers", "0")
    assert code == 1 and "use fewer images (--shots N" in err and not (tmp_path / "bench" / "results.json").exists()


def test_the_memory_limit_of_the_process_cgroup_and_its_parents_is_read(tmp_path):
    from vipcli.preflight import _cgroup_memory_limits

    root = tmp_path / "cgroup"
    job = root / "slurm" / "job_7" / "step_0"  # v2: a Slurm job step's own cgroup, its limit on the job
    job.mkdir(parents=True)
    (job / "memory.max").write_text("max\n")
    (root / "slurm" / "job_7" / "memory.max").write_text(f"{8 * 2**30}\n")
    (root / "memory.max").write_text("max\n")
    membership = tmp_path / "cgroup-v2"
    membership.write_text("0::/slurm/job_7/step_0\n")
    assert _cgroup_memory_limits(root, membership) == [8 * 2**30]
    v1 = root / "memory" / "docker" / "abc"  # v1: a limit, and the unlimited marker at the top
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(f"{2 * 2**30}\n")
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    membership.write_text("5:devices:/\n4:memory:/docker/abc\n")
    assert _cgroup_memory_limits(root, membership) == [2 * 2**30]


def test_help_shows_the_default_methods_and_run_folder_whole_at_80_columns(cli, monkeypatch):
    """Defaults are shown whole in an 80-column terminal, not cut to 'zeroshot,symptom-ze…'."""
    from vipcli.cli.benchmark import DEFAULT_METHODS

    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = cli("benchmark", "--help")
    text = " ".join(out.replace("│", " ").split())
    assert code == 0 and "[default: (" + ", ".join(DEFAULT_METHODS) + ")]" in text, text
    code, out, _ = cli("train", "--help")
    text = " ".join(out.replace("│", " ").split())
    assert code == 0 and "Run directory (default: a new folder in runs/, named after the data, method, backbone, " \
                         "shots and seed)" in text, text


def test_train_given_an_image_file_as_data_says_it_is_a_file(cli, isic_small):
    """As vip benchmark and vip symptoms rank say it: not "data folder not found" for a file that exists."""
    image = next((isic_small / "test" / "nevus").iterdir())
    code, _, err = cli("train", "--data", image)
    assert code == 1 and err.strip() == (f"error: --data {image} is a file, not a folder "
                                         "(pass --data DIR with one subfolder per class)"), err


@pytest.mark.parametrize("argv, said", [
    (("predict", "scan.png", "--run", "runs/x"), "error: No such option: --run (did you mean --model?)"),
    (("predict", "scan.png", "--checkpoint=runs/x"), "error: No such option: --checkpoint (did you mean --model?)"),
    (("train", "--weights", "w.pt"), "error: No such option: --weights (did you mean --pretrained?)"),
    (("demo", "--run", "x"), "error: No such option: --run (Possible options: --out)"),  # demo has no --model
    # its --model is the LLM's name: a run directory is not what it takes
    (("symptoms", "generate", "-d", "nevus", "--checkpoint", "x"),
     "error: No such option: --checkpoint (see 'vip symptoms generate -h')"),
])
def test_an_option_named_by_what_it_means_points_to_vips(cli, argv, said):
    """`vip predict scan.png --run DIR` (the natural guess) was answered "Possible options: --out": click
    suggests by spelling only, and the trained run is given with --model."""
    code, _, err = cli(*argv)
    assert code == 2 and err.splitlines()[0].startswith(said), err


def test_the_default_run_folder_of_a_plugin_id_no_folder_name_can_hold_is_one_folder(tmp_path, monkeypatch):
    """A method id `org/prompt:v2` (an entry-point name may hold both) made runs/isic-org/prompt:v2-...: a folder
    inside another, and a name Windows refuses. Such characters are written `_`."""
    from vipcli.settings import BackboneSettings
    from vipcli.train import TrainConfig, default_run_dir

    monkeypatch.chdir(tmp_path)
    config = TrainConfig(data=tmp_path / "isic", method="org/prompt:v2", backbone=BackboneSettings('my"clip?'))
    assert default_run_dir(config).as_posix() == "runs/isic-org_prompt_v2-my_clip_-16shot-seed1"
    config = TrainConfig(data=tmp_path / "isic", backbone=BackboneSettings("toy"), shots=None, seed=2)
    assert default_run_dir(config).as_posix() == "runs/isic-vip-toy-all-seed2"


@pytest.mark.parametrize("platform_default, set_to, images, workers", [
    ("fork", None, 100, 2),  # Linux: forked workers start at once
    ("spawn", None, 100, 0),  # macOS, Windows: each would import torch first, for a set of 100 images
    ("spawn", None, 512, 2),
    ("fork", "forkserver", 100, 0),  # a start method the caller chose counts, not the platform's
    ("spawn", "fork", 8, 2),
])
def test_decoding_workers_start_only_where_their_start_costs_less_than_they_save(monkeypatch, platform_default,
                                                                               set_to, images, workers):
    """Under spawn, `vip train --backbone toy --shots 16 --workers 2` on 230 ISIC images took 54 s instead of 9 s:
    each of train, val and test started two fresh Pythons importing torch and torchvision."""
    import multiprocessing
    import os

    from vipcli import decoding

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: [platform_default, "forkserver"])
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: set_to)
    assert decoding.decoding_workers(images, 2) == workers


def test_a_model_that_calls_every_test_image_one_class_is_warned_about(cli, isic_small, tiny_clip, tmp_path,
                                                                        monkeypatch):
    """With 3 pneumonia X-rays to 1 normal, a model that says 'pneumonia' to everything scores 75% accuracy;
    the table showed only that, with no word that it never finds a normal image."""
    import vipcli.fitting

    predict = vipcli.fitting.predict_logits

    def always_nevus(method, features, device):
        logits = predict(method, features, device)
        return logits + logits.new_tensor([0.0, 100.0])  # [N, 2]: every image called nevus
    monkeypatch.setattr(vipcli.fitting, "predict_logits", always_nevus)
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run"))
    assert code == 0
    warnings = [line for line in err.splitlines() if "finds no test image" in line]
    assert warnings == [f"warning: the model finds no test image of melanoma (0 of 4): it calls every test image "
                        f"nevus, so its accuracy of 50.00% is the share of nevus among the 8 test images (macro-F1 "
                        f"and each class's sensitivity in `vip report {tmp_path / 'run'}` show it; try more shots, "
                        f"or see what the backbone tells apart with `vip symptoms rank`)"], err


def test_a_zero_shot_model_that_misses_a_class_is_not_told_to_try_more_shots(cli, isic_small, tiny_clip, tmp_path,
                                                                             monkeypatch):
    """A zero-shot run uses no labelled images, so "try more shots" was advice it cannot follow: it is pointed
    to a method that learns from them instead."""
    import vipcli.fitting

    predict = vipcli.fitting.predict_logits

    def always_nevus(method, features, device):
        logits = predict(method, features, device)
        return logits + logits.new_tensor([0.0, 100.0])  # [N, 2]: every image called nevus
    monkeypatch.setattr(vipcli.fitting, "predict_logits", always_nevus)
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "run", "--method", "zeroshot"))
    assert code == 0
    warnings = [line for line in err.splitlines() if "finds no test image" in line]
    assert len(warnings) == 1 and "try more shots" not in warnings[0], err
    assert warnings[0].endswith("show it; try a method that learns from labelled images (--method vip --shots 16), "
                                "or see what the backbone tells apart with `vip symptoms rank`)"), err


def test_the_missed_class_warning_names_each_class_never_found():
    from vipcli.metrics import missed_classes_warning

    assert missed_classes_warning([[3, 1], [1, 3]], ["normal", "pneumonia"]) == ""
    assert missed_classes_warning([[0, 0], [0, 0]], ["normal", "pneumonia"]) == ""  # no images: nothing to find
    three = missed_classes_warning([[5, 0, 0], [0, 4, 1], [0, 3, 0]], ["normal", "bacterial", "viral"], "run")
    assert three.startswith("the model finds no test image of viral (0 of 3): its accuracy of 69.23% comes from "
                            "the other classes alone (macro-F1 and each class's sensitivity in `vip report run`")
