"""A benchmark sweep's results folder: what it stores and what must match to resume it.

`results.json` (the settings, every finished row and their summary over seeds), `results.csv` (the
rows) and `summary.csv` (the tables' figures) are rewritten atomically, together, after each row or
batched group; `split.json` lists the images behind the
rows. A sweep resumes only where the stored rows were made with the same data, images (their bytes
and whether each could be read), decoding rules, backbone, views and schedule: otherwise its table
would mix rows of other inputs. `vipcli.benchmark` runs the sweep; this module keeps its records.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from rich.markup import escape

from vipcli import console
from vipcli.atomic import write_atomic
from vipcli.data import Dataset, relative_to_data
from vipcli.digests import text_digest
from vipcli.errors import VipError
from vipcli.features import same_decoding
from vipcli.featuresets import PreparedData
from vipcli.image_fit import DEFAULT_FIT
from vipcli.metrics import mean_and_std, row_figure
from vipcli.weights_identity import legacy_weights_unverifiable, same_backbone

RESULTS_FORMAT = "vip-benchmark"
RESULTS_VERSION = 1
ROW_FIELDS = (
    "method", "shots", "seed", "shots_used", "n_train", "epochs", "best_epoch", "val_accuracy", "val_macro_f1",
    "val_auroc", "test_accuracy", "test_macro_f1", "test_auroc", "test_confusion_matrix", "fit_s", "finished_at",
    "val_balanced_accuracy", "test_balanced_accuracy",  # last: the columns before them keep their places
)
SUMMARY_FIELDS = (  # summary.csv: the tables' figures, per method and shots; figures in %
    "method", "shots", "n_seeds", "seeds", "shots_used", "test_accuracy_mean_pct", "test_accuracy_std_pct",
    "test_macro_f1_mean_pct", "test_macro_f1_std_pct", "test_auroc_mean_pct", "test_auroc_std_pct",
    "test_balanced_accuracy_mean_pct", "test_balanced_accuracy_std_pct",  # last, as in ROW_FIELDS
)
OWN_FILES = {"results.json", "results.csv", "summary.csv", "split.json", "shots.png", "speed.json",
             "report.html"}  # what --out may hold
SWEEP_LOCK = ".vip-benchmark.lock"  # inside the folder, held by the sweep writing it: a dot-file, which it may hold
MATCHED_KEYS = ("data", "backbone", "arch", "pretrained", "backbone_fingerprint", "views", "image_fit", "schedule",
                "epochs", "batch_size", "lr", "method_options", "split_seed", "split_digest")
OPTION_KEYS = ("data", "backbone", "arch", "pretrained", "views", "image_fit", "schedule", "epochs", "batch_size", "lr",
               "method_options")  # the matched settings the options alone give: checked before any work


# --- the folder and its settings -------------------------------------------------------------


def running_sweep(out: Path) -> str | None:
    """Whether a `vip benchmark` is writing `out` now: None if not, else its holder (" (pid 1 on host h)" or "")."""
    from vipcli.locks import lock_holder

    return lock_holder(Path(out) / SWEEP_LOCK)


def read_stored(out: Path) -> dict | None:
    """The results.json of an earlier sweep in `out` (None if there is none)."""
    path = out / "results.json"
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise VipError(f"{path} is unreadable ({error})", "pass --force to start this benchmark over") from None
    if stored.get("format") != RESULTS_FORMAT or not isinstance(stored.get("rows"), list):
        raise VipError(f"{path} is not a vip benchmark results file", "pass --force or choose another --out")
    return stored


def check_speed_out(out: Path, data: Path) -> None:
    """`vip benchmark --speed` writes speed.json into a benchmark folder: refuse one that holds other
    files, or a benchmark of another data set (its report would show this data's speed beside it)."""
    refuse_foreign_files(out, "choose an empty or new --out folder, or the benchmark folder of this data")
    try:
        stored = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return
    stored_data = (stored.get("config") or {}).get("data") if isinstance(stored, dict) else None
    if stored_data and stored_data != str(Path(data).resolve()):
        raise VipError(f"--out {out} holds a benchmark of other data ({stored_data})",
                       "choose another --out, or that benchmark's --data")


def refuse_foreign_files(out: Path, hint: str) -> None:
    """VipError (with `hint`) if `out` holds files a benchmark did not write (checked with --force too: it
    starts a sweep over, never replacing files of the user's)."""
    foreign = _foreign_files(out)
    if foreign:
        raise VipError(f"--out {out} holds files of something else ({', '.join(foreign[:3])})", hint)


def _foreign_files(out: Path) -> list[str]:
    """Names in `out` that a benchmark did not write (temp files of an interrupted write excepted)."""
    if not out.is_dir():
        return []
    sweep = (out / "results.json").is_file()
    return sorted(p.name for p in out.iterdir() if not p.name.startswith(".") and not _may_be_ours(p, sweep))


def _may_be_ours(path: Path, sweep: bool) -> bool:
    """Whether `path` may be a file a benchmark wrote: one of its names; results.csv and summary.csv only beside
    a results.json (always written first), report.html only if it is a page vip wrote."""
    from vipcli.report.html import replaces_ours

    if path.name not in OWN_FILES:
        return False
    if path.name in ("results.csv", "summary.csv"):
        return sweep
    return path.name != "report.html" or replaces_ours(path)


def check_matches(stored: dict, current: dict, out: Path, unused: frozenset[str] = frozenset()) -> None:
    """Refuse to mix rows made with other data, backbone, views, image fit, schedule overrides or symptoms; the
    settings in `unused` (that no stored or new row can depend on: `settings_no_row_uses`) may differ."""
    before = {"image_fit": DEFAULT_FIT, **stored.get("config", {})}  # a sweep of an earlier vip: crop, as all then
    current = {"image_fit": DEFAULT_FIT, **current}
    differ = [key for key in MATCHED_KEYS if key not in unused and before.get(key) != current.get(key)]
    if "backbone_fingerprint" in differ and same_backbone(before.get("backbone_fingerprint"), before.get(
            "backbone_describe"), current.get("backbone_fingerprint"), current.get("backbone_describe")):
        differ.remove("backbone_fingerprint")  # weights recorded by an earlier vip's path/size/mtime: the same file
    if "content_digest" in before and before["content_digest"] != current.get("content_digest") \
            and "split_digest" not in differ:  # other files: their bytes differ too, which says nothing more
        differ.append("content_digest")  # absent from benchmarks begun by an earlier vip: not checked there
    if "decoding" in before and not same_decoding(before["decoding"], current.get("decoding")):
        differ.append("decoding")  # recorded since 2026-11-29, in other forms that day
    old, new = before.get("symptoms") or {}, current.get("symptoms") or {}
    if old and new and old != new and "symptoms" not in unused:
        differ.append("symptoms")
    unverifiable = legacy_weights_unverifiable(before.get("backbone_describe"), current.get("backbone_describe"))
    if differ == ["backbone_fingerprint"] and unverifiable:
        raise VipError(f"{out / 'results.json'}, begun by an earlier vip, names {unverifiable}: vip cannot tell "
                       f"whether its rows were made with these weights", "pass --force to start over, or choose "
                       "another --out")
    if "backbone_fingerprint" in differ and any(key in differ for key in ("backbone", "arch", "pretrained")):
        differ.remove("backbone_fingerprint")  # other weights follow from the other option: named there
    if differ:
        _refuse_other_settings(differ, before, current, out)


def check_options_match(stored: dict, options: dict, out: Path, unused: frozenset[str] = frozenset()) -> None:
    """Refuse, before the data, the backbone or any image is read, a resume whose options (`options`: OPTION_KEYS,
    as `config_record` records them) differ from the stored sweep's: `check_matches` names the same differences,
    but only once every image has been hashed and the backbone loaded, which takes minutes on a large data set.
    `options` may hold `split_seed` too, where the data folder's layout shows that vip carves a split with it.
    The settings in `unused` (that no row can depend on) may differ."""
    before = {"image_fit": DEFAULT_FIT, **stored.get("config", {})}
    keys = OPTION_KEYS + (("split_seed",) if "split_seed" in options else ())  # where the layout shows it used
    differ = [key for key in keys
              if key not in unused and before.get(key) != {"image_fit": DEFAULT_FIT, **options}.get(key)]
    if differ:
        _refuse_other_settings(differ, before, options, out)


def _refuse_other_settings(differ: list[str], before: dict, current: dict, out: Path) -> None:
    """The one VipError of a resume whose `differ` settings differ: each named, stored and now."""
    detail = "; ".join(_difference(key, before.get(key), current.get(key)) for key in differ)
    raise VipError(f"{out / 'results.json'} was made with other settings ({detail})",
                   "rerun with the stored settings to resume, pass --force to start over, or choose another --out")


def _difference(key: str, stored, now) -> str:
    """One stored setting against the current one, as the refusal names it."""
    if key == "content_digest":
        return "the images' content: some image files were replaced (or could not be read) since"
    if key == "split_digest":
        return "the images: files were added, removed or moved since"
    if key == "decoding":
        return "how images are decoded: this vip reads images by other rules than the vip that began it"
    if key == "symptoms":
        return _symptoms_difference(stored, now)
    if key == "backbone_fingerprint":
        return (f"the backbone's weights: stored {_setting(stored)}, now {_setting(now)}, under the same --backbone, "
                "--arch and --pretrained")
    return f"{OPTION_OF_SETTING.get(key, key)}: stored {_setting(stored)}, now {_setting(now)}"


def _symptoms_difference(stored: dict, now: dict) -> str:
    """The classes whose symptoms differ between the stored sweep and now, with how many each had:
    "--symptoms: other symptoms for melanoma (stored 4, now 2), nevus (stored 4, now 2)"."""
    classes = [name for name in dict.fromkeys([*stored, *now]) if stored.get(name) != now.get(name)]

    def count(symptoms) -> str:
        return str(len(symptoms)) if isinstance(symptoms, list) else "none"

    shown = ", ".join(f"{name} (stored {count(stored.get(name))}, now {count(now.get(name))})" for name in classes[:3])
    more = f" and {len(classes) - 3} more classes" if len(classes) > 3 else ""
    return f"--symptoms: other symptoms for {shown}{more}"


OPTION_OF_SETTING = {  # a stored setting -> the option that sets it, as the refusal to resume names it
    "data": "--data", "backbone": "--backbone", "arch": "--arch", "pretrained": "--pretrained", "views": "--views",
    "image_fit": "--image-fit",
    "schedule": "--schedule", "epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr",
    "method_options": "--method-option", "split_seed": "--split-seed",
}


def _setting(value) -> str:
    """A setting as a user types it: 8, 0.002, none; a dict as key=value pairs; None or an empty dict (the
    option was not given: its default) as "not given", apart from a given `none` (`--pretrained none`)."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "not given"
    return "not given" if value is None else str(value)


def upgrade_stored_config(stored: dict) -> dict:
    """A results.json of vip 0.1.0 (with `n_ctx`) as this version writes it (with `method_options`)."""
    config = dict(stored.get("config", {}))
    if "method_options" not in config:
        n_ctx = config.pop("n_ctx", 4)
        config["method_options"] = {} if n_ctx == 4 else {"n_ctx": n_ctx}
    return {**stored, "config": config}


def upgrade_split_digest(stored: dict, dataset: Dataset, stored_split: dict | None = None) -> dict:
    """A results.json of an earlier vip, whose split digest named the files as that run was given them,
    with this version's digest (files relative to the data folder) when it is of these same files: the
    folder given as then, or (given another way: absolute, from another working directory) the sweep's
    split.json `stored_split` listing these same files and labels, relative to the data folder. A split.json
    this vip wrote beside another results.json (`results_split_digest` not `stored`'s: a --force run stopped
    before its first row was saved, the earlier sweep's results.json still there) lists other rows' files."""
    config = stored.get("config", {})
    before, now = config.get("split_digest"), split_digest(dataset)
    if before in (None, now):
        return stored
    beside = isinstance(stored_split, dict) and stored_split.get("results_split_digest", before) == before
    if before == split_digest(dataset, as_given=True) or (beside and same_split_lists(stored_split, dataset)):
        return {**stored, "config": {**config, "split_digest": now}}
    return stored


def split_of_another_sweep(stored_split: dict | None, dataset: Dataset) -> bool:
    """Whether the sweep folder's split.json was written by another sweep than the results.json beside it,
    whose rows `check_matches` found to be of `dataset`: a `--force` sweep of other images (or another
    split) that stopped after writing its split.json, before its first row replaced results.json. Its
    lists then name other files; a split.json of an earlier vip (no `results_split_digest`) is kept."""
    return (isinstance(stored_split, dict) and "results_split_digest" in stored_split
            and not same_split_lists(stored_split, dataset))


def orders_to_carry(old_split: dict | None, dataset: Dataset, split_seed: int, seeds) -> dict:
    """The few-shot orders a `--force` sweep of `seeds` carries over from the folder's old split.json: those
    of the other seeds, when it lists the same images and split. results.json keeps the old rows until
    the sweep's first row replaces it, and their orders stay recorded until then (the record cannot be
    rebuilt later without encoding their images)."""
    if not same_split_lists(old_split, dataset) or old_split.get("split_seed") != split_seed:
        return {}
    orders = old_split.get("few_shot_order")
    now = {str(seed) for seed in seeds}
    return {seed: order for seed, order in orders.items() if seed not in now and isinstance(order, dict)} \
        if isinstance(orders, dict) else {}


def same_split_lists(stored_split: dict | None, dataset: Dataset) -> bool:
    """Whether split.json's lists name exactly `dataset`'s files and labels (what its split digest digests)."""
    if not isinstance(stored_split, dict) or not set(dataset.splits) <= {"train", "val", "test"}:
        return False
    root = Path(dataset.root)
    lists = {name: [[relative_to_data(s.path, root), s.label] for s in dataset.splits.get(name, [])]
             for name in ("train", "val", "test")}
    return json.loads(json.dumps(lists)) == {name: stored_split.get(name, []) for name in lists}


# --- the images behind the rows --------------------------------------------------------------


def content_digest(dataset: Dataset) -> str:
    """A short digest of the bytes of every image of every split: an image replaced in place (same path
    and label, other pixels) changes it, so a resumed sweep never mixes rows of old and new images."""
    from vipcli.digests import digest_many

    paths = [s.path for name in sorted(dataset.splits) for s in dataset.splits[name]]
    digests = [d if isinstance(d, str) else "unreadable" for d in digest_many(paths)]
    return text_digest("\n".join(digests))


def split_digest(dataset: Dataset, as_given: bool = False) -> str:
    """A short digest of the exact files and labels of every split, named relative to the data folder:
    the same however the folder is given (relative, absolute, from another working directory).
    `as_given`: named as the run read them, as an earlier vip digested them (`upgrade_split_digest`)."""
    root = Path(dataset.root)
    name_of = str if as_given else (lambda path: relative_to_data(path, root))
    blob = json.dumps({name: [[name_of(s.path), s.label] for s in samples] for name, samples in dataset.splits.items()})
    return text_digest(blob)


def check_same_readability(stored_split: dict | None, pool: PreparedData, root: Path, out: Path) -> None:
    """Refuse to resume a sweep whose stored rows were made without images that are readable now (a
    DICOM plugin installed since, a vip that reads more files), or with images unreadable now: new rows
    would train and test on other images than the stored ones, and the table would mix them.

    `stored_split` is the sweep's split.json (None, or one of an earlier vip without `unreadable`: not checked).
    """
    if not stored_split or not isinstance(stored_split.get("unreadable"), dict):
        return
    root = Path(root)

    def resolved(path) -> str:  # split.json's lists hold paths relative to the data folder
        return str((root / path).resolve())

    # its unreadable files are named as the run read them: under the data folder as it was given
    was_unreadable = {name for path in stored_split["unreadable"]
                      for name in (resolved(path), str(Path(path).resolve()))}
    read_then = {resolved(entry[0]) for name in ("val", "test") for entry in stored_split.get(name, [])
                 if isinstance(entry, list) and entry}
    for classes in stored_split.get("few_shot_order", {}).values():
        read_then.update(resolved(path) for paths in classes.values() for path in paths)
    read_now = {str(Path(path).resolve()): path for part in (pool.train, pool.val, pool.test) for path in part.paths}
    now_read = sorted(path for name, path in read_now.items() if name in was_unreadable)
    if now_read:
        raise VipError(f"{out}: {len(now_read)} {console.plural(len(now_read), 'image')} its stored rows were made "
                       f"without can be read now ({console.first_few(now_read, 3)}); new rows would use other images",
                       "pass --force to run the whole sweep again with them, or choose another --out")
    now_unread = sorted(path for path in pool.failures if str(Path(path).resolve()) in read_then - was_unreadable)
    if now_unread:
        raise VipError(f"{out}: {len(now_unread)} {console.plural(len(now_unread), 'image')} its stored rows were "
                       f"made with cannot be read now ({console.first_few(now_unread, 3)}: "
                       f"{pool.failures[now_unread[0]]})",
                       "restore them, or the decoder that read them; or pass --force to run the sweep again without them")


def relative_stored_name(key: str, root: Path) -> str:
    """A file named in a stored split.json's `unreadable`, relative to the data folder `root` (given as now):
    an earlier vip named them as its run read them (relative to the working directory, or absolute)."""
    top = Path(os.path.abspath(root))
    if not Path(key).is_absolute() and (root / key).exists():  # relative to the data folder, or reaching it
        path = Path(os.path.normpath(top / key))  # from there (`../data/x.png` under `--data ../data`)
        return str(path.relative_to(top)) if path.is_relative_to(top) else key
    path = Path(os.path.abspath(key))
    return str(path.relative_to(top)) if path.is_relative_to(top) else key


# --- the rows and their summary --------------------------------------------------------------


def results_csv(rows: list[dict]) -> str:
    """One CSV line per row, ROW_FIELDS as columns (the confusion matrix as JSON text)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ROW_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "test_confusion_matrix": json.dumps(row.get("test_confusion_matrix"))})
    return buffer.getvalue()


def summary_csv(rows: list[dict]) -> str:
    """One CSV line per method and shots (SUMMARY_FIELDS): the figures the tables show (console and
    `vip report`), mean and sample std over the seeds from each row's confusion matrix, rounded once.

    A mean of results.csv's two-decimal figures can differ from them by 0.01; these do not. `seeds` lists
    the seeds (space-separated), `shots_used` is the fewest training images per class of the rows, a std
    is empty with one seed."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], str(row["shots"])), []).append(row)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SUMMARY_FIELDS)
    for entry in summarize(rows):
        members = groups[entry["method"], str(entry["shots"])]
        auroc = mean_and_std([row_figure(r, "test_auroc") for r in members])
        used = [r["shots_used"] for r in members if isinstance(r.get("shots_used"), int)]
        writer.writerow([entry["method"], entry["shots"], len(entry["seeds"]), " ".join(map(str, entry["seeds"])),
                         min(used) if used else "", *("" if v is None else f"{v:.2f}" for v in (
                             entry["accuracy_mean"], entry["accuracy_std"], entry["macro_f1_mean"],
                             entry["macro_f1_std"], *auroc, entry["balanced_accuracy_mean"],
                             entry["balanced_accuracy_std"]))])
    return buffer.getvalue()


def save_results(out: Path, config: dict, class_names: list[str], rows: list[dict]) -> None:
    """Rewrite results.json, results.csv and summary.csv atomically (every stored row, with the summary),
    together: a Ctrl-C or SIGTERM that arrives meanwhile stops the sweep after the third, so the three
    files always hold the same rows."""
    from vipcli import stop_signals

    document = {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, "config": config, "class_names": class_names,
                "rows": rows, "summary": summarize(rows)}
    writing = out / "results.json"
    try:
        with stop_signals.deferred():
            write_atomic(writing, json.dumps(document, indent=2))
            for writing, text in ((out / "results.csv", results_csv(rows)), (out / "summary.csv", summary_csv(rows))):
                _write_table(writing, text)
    except OSError as error:  # the disk filled up or went read-only during the sweep
        from vipcli.preflight import describe_os_error

        raise VipError(f"cannot write {writing} ({describe_os_error(error)}); the rows finished before this one are "
                       "kept", "free some space and run the same command again to resume") from None


def _write_table(path: Path, text: str) -> None:
    """Rewrite results.csv or summary.csv with `text`; where a program holds it open (Excel on Windows, which
    refuses to let an open file be replaced) one warning, and the sweep goes on: results.json, just written,
    holds every row, and the next row's save (or a rerun) writes the csv."""
    from vipcli.preflight import held_open

    try:
        write_atomic(path, text)
    except PermissionError as error:
        if not held_open(path, error):
            raise  # a folder gone read-only: the caller's error
        if path not in _warned_open:
            _warned_open.add(path)
            console.warn(escape(f"{path} is open in another program, which keeps it from being replaced: not "
                                "updated (results.json has every row; close it, and the next row, or rerunning the "
                                "same command, rewrites it)"))


_warned_open: set[Path] = set()  # the results.csv and summary.csv files warned about being held open, once each


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and sample std (n-1) over seeds of test accuracy, macro-F1 and balanced accuracy, per (method,
    shots), each computed from the rows' confusion matrices (`row_figure`: rows of an earlier vip, which
    stored no balanced accuracy, have one) and rounded once.

    Returns:
        [{method, shots, seeds, accuracy_mean, accuracy_std, macro_f1_mean, macro_f1_std, balanced_accuracy_mean,
        balanced_accuracy_std}] in row order.
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], str(row["shots"])), []).append(row)
    summary = []
    for members in groups.values():
        accuracy, f1, balanced = (mean_and_std([row_figure(r, f"test_{key}") for r in members])
                                  for key in ("accuracy", "macro_f1", "balanced_accuracy"))
        summary.append({"method": members[0]["method"], "shots": members[0]["shots"],
                        "seeds": sorted(int(r["seed"]) for r in members), "accuracy_mean": accuracy[0],
                        "accuracy_std": accuracy[1], "macro_f1_mean": f1[0], "macro_f1_std": f1[1],
                        "balanced_accuracy_mean": balanced[0], "balanced_accuracy_std": balanced[1]})
    return summary


def warn_other_versions(stored_rows: list[dict], pending_methods, out: Path) -> None:
    """One warning per method that the sweep adds rows of, with this installed version, beside stored rows
    that another version of its distribution made (`method_distribution`): a cell may then average rows of
    two versions of the method's code (vip upgraded between two days of a sweep). Rows of an earlier vip
    (no record) are not checked."""
    from vipcli.provenance import installed_method, spelled

    for method in dict.fromkeys(pending_methods):
        now = installed_method(method)
        before = {spelled(row["method_distribution"]) for row in stored_rows
                  if row.get("method") == method and isinstance(row.get("method_distribution"), dict)}
        if now is None or not before or before == {spelled(now)}:
            continue
        console.warn(f"the stored '{method}' rows in {out} were made by {', '.join(sorted(before))}, the rows run "
                     f"now by {spelled(now)}: a figure may average both (pass --force to run every row with "
                     f"{spelled(now)})")


def read_json(path: Path) -> dict | None:
    """The JSON document in `path`, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
