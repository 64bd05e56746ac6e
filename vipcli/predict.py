"""`vip predict` as a library: a trained run + image files -> classes, probabilities, symptoms."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vipcli import console
from vipcli.decoding import DecodingWorkers
from vipcli.errors import UsageError, VipError
from vipcli.images import IMAGE_SUFFIXES, image_files_under
from vipcli.results import Prediction
from vipcli.stop_signals import stop_if_received


@dataclass
class Predictor:
    """A loaded run, ready to classify images; class-side work is done once."""

    run_dir: Path
    metadata: dict
    backbone: object
    method: torch.nn.Module  # a fitted vipcli.methods.Method
    class_names: list[str]
    failures: dict[str, str] = field(default_factory=dict)
    calibration: object | None = None  # vipcli.trust.RunCalibration; None for runs of an earlier vip
    model_digest: str = ""  # the first 12 hex digits of the sha256 of the run's model.safetensors (with another
    # backbone than the run's: `other_backbone_digest`)

    @property
    def image_fit(self) -> str:
        """How the run fitted images into the encoder's square (`vipcli.image_fit`): crop, pad or squash."""
        from vipcli.image_fit import run_fit

        return run_fit(self.metadata, str(self.run_dir))

    def feature_cache(self, root: Path | None):
        """The feature cache at `root` (None: memory only) that encodes images as this run was trained on them."""
        from vipcli.features import FeatureCache

        return FeatureCache(root, self.backbone, self.image_fit)


def load_predictor(run_dir: str | Path, device="cpu", backbone_id: str | None = None,
                   image_fit: str | None = None) -> Predictor:
    """Rebuild the backbone and the fitted method exactly as the run stored them.

    Args:
        run_dir: a run directory written by `vip train`.
        device: torch.device for inference.
        backbone_id: if given, must match the run's backbone (a clear error names both).
        image_fit: if given (`vip predict --image-fit`), must be the run's (a UsageError names both).
    """
    from vipcli.checkpoint import read_checkpoint
    from vipcli.methods import MethodSetup, restore_method
    from vipcli.methods.backbone_guard import REBUILT, REBUILT_DOING, check_kept, kept_by, whole_state_before_rebuild
    from vipcli.provenance import check_installed
    from vipcli.registry import BACKBONES, check_backbone_paths, load_backbone, rebuild_backbone_options
    from vipcli.trust import read_calibration
    from vipcli.weights_identity import same_backbone

    tensors, meta = read_checkpoint(run_dir)  # a method plugin that is not installed: which one to install
    if backbone_id and backbone_id != meta.get("backbone"):
        raise UsageError(f"{run_dir} was trained with backbone '{meta.get('backbone')}', not '{backbone_id}'",
                         f"drop --backbone or pass --backbone {meta.get('backbone')}")
    from vipcli.image_fit import check_same_fit, run_fit

    check_same_fit(image_fit, run_fit(meta, str(run_dir)), run_dir)  # before any weights load
    check_installed(run_dir, "backbone", meta["backbone"], meta, BACKBONES)  # before any weights load
    warn_settings_drift(run_dir, meta)
    arch, pretrained = rebuild_backbone_options(run_dir, meta.get("arch_option") or None,
                                                meta.get("pretrained_option") or None)
    check_backbone_paths(run_dir, arch=arch, pretrained=pretrained)
    backbone = load_backbone(meta["backbone"], arch, pretrained, device)
    digest = model_digest(run_dir)
    if not same_backbone(meta.get("backbone_fingerprint"), meta.get("backbone_describe"), backbone.fingerprint(),
                         backbone.describe()):
        from rich.markup import escape

        console.warn(escape(backbone_warning(meta["backbone"], run_dir, backbone.describe(),
                                             meta.get("backbone_describe"))))
        digest = other_backbone_digest(digest, backbone)
    setup = MethodSetup(backbone, list(meta["class_names"]), meta.get("symptoms") or {})
    before = whole_state_before_rebuild(meta["method"], backbone)  # a plugin's: every byte, before it is rebuilt
    method = restore_method(meta["method"], setup, meta.get("method_settings") or {}, meta.get("method_state") or {},
                            tensors, str(run_dir), meta)
    kept_by(method, "prepare", method.prepare)
    check_kept(method, REBUILT, before, REBUILT_DOING)  # before any image is encoded with a changed backbone
    return Predictor(Path(run_dir), meta, backbone, method, list(meta["class_names"]),
                     calibration=read_calibration(meta), model_digest=digest)


def trained_at_chance(predictor) -> str:
    """What the run's own test images showed when none of its classes beat chance there (metrics.json's
    `test.vs_chance`, as `vip train` warned), e.g. "the 510 test images do not show that the model tells melanoma
    from nevus better than chance: ..."; "" otherwise, for random weights (its load warns of them) and for a run
    whose metrics.json cannot be read."""
    from vipcli.chance import at_chance, chance_sentence
    from vipcli.report.notices import random_weights

    try:
        test = run_metrics(predictor.run_dir)["test"]
        scores = test.get("vs_chance") or []
        sentence = chance_sentence(scores, predictor.class_names, test.get("n", 0)) if at_chance(scores) else ""
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""
    return "" if random_weights(predictor.metadata) else sentence


def run_metrics(run_dir) -> dict:
    """The metrics.json of a run folder (`run_dir` may name its model file), as read: OSError or ValueError when it
    is missing or not JSON, which the notes about a run read as "nothing to say"."""
    import json

    folder = Path(run_dir) if Path(run_dir).is_dir() else Path(run_dir).parent
    return json.loads((folder / "metrics.json").read_text())


def trained_at_chance_warning(predictor) -> str:
    """`vip predict`'s one line for a run whose own test images did not show that it beats chance
    (`trained_at_chance`), naming the images its backbone knows where they are narrow (the toy's lesion world):
    the predictions that follow are no evidence of a class. "" otherwise."""
    sentence = trained_at_chance(predictor)
    if not sentence:
        return ""
    loaded = getattr(predictor.backbone, "id", None)
    domain = str(getattr(predictor.backbone, "image_domain", "") or "")
    knows = f"; backbone '{loaded}' knows only {domain}" if domain and loaded else ""
    return (f"measured when {predictor.run_dir} was trained, {sentence}{knows}: read these predictions as no "
            "evidence of a class")


def backbone_warning(backbone_id: str, run_dir, now: dict, trained) -> str:
    """The warning of a backbone that is not the one `run_dir` recorded: what differs, or, for weights
    an earlier vip recorded by path, size and modification time that changed since, that vip cannot
    tell (the same file touched or copied is not said to differ)."""
    from vipcli.weights_identity import legacy_weights_unverifiable

    unverifiable = legacy_weights_unverifiable(trained, now)
    if unverifiable:
        return (f"cannot tell whether backbone '{backbone_id}' has the weights {run_dir} was trained with: "
                f"the run (written by an earlier vip) names {unverifiable}; retrain with this vip to record "
                f"the weights' sha256")
    return (f"backbone '{backbone_id}' differs from the one {run_dir} was trained with "
            f"({backbone_difference(now, trained or {})})")


def backbone_difference(now: dict, trained: dict) -> str:
    """What differs between two `describe()`s, as the predict warning names it: "weights: now X, trained
    with Y" when the weights differ, else the first other entry that does (never two equal values shown
    as differing)."""
    keys = [key for key in sorted(set(now) | set(trained)) if now.get(key) != trained.get(key)]
    key = "weights" if "weights" in keys or not keys else keys[0]
    files = _files_that_differ(now.get(key), trained.get(key))
    if files:  # a model folder's tokenizer or preprocessor files: which ones, not every digest
        return f"{key}: {console.first_few(files, 4)} differ{'s' if len(files) == 1 else ''} from the run's"
    return f"{key}: now {now.get(key)}, trained with {trained.get(key)}"


def _files_that_differ(now, trained) -> list[str]:
    """The names of the files whose content differs, is new or is gone, when both values are lists of
    file identities ({"file", "size", "sha256"}); [] for any other values."""
    if not (isinstance(now, list) and isinstance(trained, list)
            and all(isinstance(item, dict) and "file" in item for item in (*now, *trained))):
        return []
    old, new = {item["file"]: item for item in trained}, {item["file"]: item for item in now}
    return [name for name in dict.fromkeys([*old, *new]) if old.get(name) != new.get(name)]


def warn_settings_drift(run_dir: str | Path, meta: dict) -> None:
    """Warn when a plugin method's stored settings no longer match its installed `Settings` (see provenance)."""
    from vipcli.methods import method_class
    from vipcli.provenance import settings_drift

    message = settings_drift(str(run_dir), meta["method"], method_class(meta["method"]).Settings,
                             meta.get("method_settings") or {}, meta)
    if message:
        from rich.markup import escape

        console.warn(escape(message))


def other_backbone_digest(digest: str, backbone) -> str:
    """The model digest of a run (`digest`, `model_digest`) predicting with a backbone other than the one it was
    trained with (other weights under the same path, say): 12 hex digits of the sha256 of the run's digest and the
    backbone's fingerprint, so a `vip predict --out` file never mixes such predictions with the run's own (or
    with those of yet another backbone) under one model name."""
    import hashlib

    return hashlib.sha256(f"{digest} {backbone.fingerprint()}".encode()).hexdigest()[:12]


def model_digest(run_dir: str | Path) -> str:
    """The first 12 hex digits of the sha256 of a run's model.safetensors: the same model, wherever it lies."""
    from vipcli.digests import file_digest

    path = Path(run_dir)
    return file_digest(path / "model.safetensors" if path.is_dir() else path)[:12]


def collect_images(inputs: list[str | Path], left_out: list[Path] | None = None) -> list[Path]:
    """Files as given plus the image files inside given folders (sorted); missing paths fail. The
    folders' other files are added to `left_out` (see `image_files_under`)."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            _refuse_folder_vip_wrote(item)
            others: list[Path] = []
            found = image_files_under(item, others)
            if left_out is not None:
                left_out.extend(others)
            if not found:
                raise _no_image_files(item, others)
            files.extend(found)
        elif item.exists():
            files.append(item)
        else:
            raise VipError(f"no such file or folder: {item}", "check the path; pass image files or folders of images")
    return files


def _refuse_folder_vip_wrote(folder: Path) -> None:
    """A run or benchmark folder given as images (`vip predict RUN`, --model's value given in the wrong place) is
    refused, naming what it is, rather than searched for images (a benchmark's plot would be predicted)."""
    from vipcli import shell
    from vipcli.data import written_by_vip

    what = written_by_vip(folder)
    if what is None:
        return
    quoted = shell.quote(folder)
    fix = (f"`vip predict IMAGES --model {quoted}` predicts with it" if "run directory" in what
           else f"`vip report {quoted}` shows it")
    raise VipError(f"{folder} is {what}, not a folder of images", f"{fix}; pass the images, or folders of images, "
                   "to predict")


def _no_image_files(folder: Path, others: list[Path]) -> VipError:
    """The error for a folder given to predict with no image file: what to pass; where it holds files vip does not
    read as images (GIFs, a PACS's DICOM exports without a suffix), which ones and what to do with them."""
    from vipcli.console import plural
    from vipcli.images import READ_SUFFIXES, nothing_read_error

    message = f"folder {folder} has no image files (in it or in its subfolders)"
    if not others:
        return VipError(message, f"pass a folder holding {', '.join(IMAGE_SUFFIXES)} images")
    n = len(others)
    return nothing_read_error(f"{message}, only {n} {plural(n, 'file')} not named as an image vip reads "
                              f"({READ_SUFFIXES})", others, folder)


CHUNK = 2048  # the most images encoded and classified together: memory stays flat in the number of images
FIRST_CHUNK = 128  # the first chunk: the first records are written within seconds; chunks then double


def predict(predictor: Predictor, paths: list[Path], explain: bool = False, cache=None, workers: int = 2,
            batch_size: int = 64, progress=None, coverage: float | None = None
            ) -> tuple[list[Prediction], dict[str, str]]:
    """Classify image files with the run's calibrated probabilities.

    Args:
        coverage: if given, each prediction gets the conformal set of classes that holds the true
            class with at least this probability (needs a run that stored its calibration).
    Returns:
        (predictions for readable files, {unreadable file: reason})
    """
    predictions, failures = [], {}
    with console.task(progress, "predicting", len(paths)) as advance, contextlib.closing(stream_predictions(
            predictor, paths, explain, cache, workers, batch_size, advance, coverage, first_chunk=CHUNK)) as results:
        # nothing is shown before the end here: the first chunk is a whole one (fewer, larger encoder calls)
        for path, prediction, reason, _ in results:
            if prediction is None:
                failures[path] = reason
            else:
                predictions.append(prediction)
    return predictions, failures


def stream_predictions(predictor: Predictor, paths: list[Path], explain: bool = False, cache=None,
                       workers: int = 2, batch_size: int = 64, advance=lambda n=1: None,
                       coverage: float | None = None, chunk: int | None = None, first_chunk: int | None = None):
    """Yield (path, Prediction or None, unreadable reason, sha256 of the bytes it was predicted from or "") for
    every image, in input order.

    Images are encoded and classified in chunks (`first_chunk` images, default FIRST_CHUNK, doubling up to
    `chunk`, default CHUNK), so no more than one chunk's features are held at once whatever the number of
    images and the first results come soon; one set of decoding workers serves every chunk. A caller that
    shows nothing before the end passes `first_chunk=CHUNK`; one that may stop early closes the generator
    (`contextlib.closing`), which stops the workers. Refuses an impossible `coverage` before any work.
    """
    from vipcli.trust import set_threshold

    cutoff = set_threshold(predictor.calibration, coverage, predictor.run_dir)  # refuses before any work
    paths = [Path(p) for p in paths]
    chunk = CHUNK if chunk is None else chunk
    start, size = 0, max(1, min(FIRST_CHUNK if first_chunk is None else first_chunk, chunk))
    with DecodingWorkers(workers, len(paths)) as shared:  # started once, not once per chunk
        while start < len(paths):
            stop_if_received()  # a Ctrl-C or SIGTERM Python swallowed (in a fork handler) stops between chunks
            yield from _predict_chunk(predictor, paths[start:start + size], explain, cache, shared, batch_size,
                                      advance, cutoff)
            start, size = start + size, min(2 * size, max(1, chunk))


def _predict_chunk(predictor: Predictor, paths: list[Path], explain, cache, shared, batch_size, advance, cutoff):
    """Encode and classify one chunk (under the run's image fit); yield its results in order."""
    from vipcli.features import encode_images

    if cache is None:
        cache = predictor.feature_cache(None)
    if cache.fit != predictor.image_fit:  # a caller's cache of another fit would encode what the run never saw
        raise ValueError(f"a feature cache of image fit {cache.fit!r} for a run of {predictor.image_fit!r}; "
                         "make it with Predictor.feature_cache")
    encoded = encode_images(predictor.backbone, paths, 0, cache, batch_size, advance=advance, shared=shared)
    readable = [i for i in range(len(paths)) if i in encoded.eval]
    row_of = {i: row for row, i in enumerate(readable)}
    features = torch.stack([encoded.eval[i] for i in readable]) if readable else None  # [N, D]
    classified = classify(predictor, features, [str(paths[i]) for i in readable], explain, cutoff) if readable else []
    for i, path in enumerate(paths):
        if i not in row_of:
            yield str(path), None, encoded.failures.get(path, "could not be encoded"), ""
        else:  # the digest its features were taken (and cached) for, not one read again: the file may change since
            yield str(path), classified[row_of[i]], "", encoded.contents[i]


def classify(predictor: Predictor, features: torch.Tensor, names: list[str], explain: bool = False,
             cutoff: float | None = None) -> list[Prediction]:
    """Predictions of images from their center-crop features [N, D], named `names` (paths), in order.

    The run's calibrated probabilities; with `explain`, each class's symptoms; with a conformal
    `cutoff` (`vipcli.trust.set_threshold`), each image's prediction set.
    """
    from vipcli.fitting import prepared_logits
    from vipcli.methods.backbone_guard import kept_by
    from vipcli.methods.contract import check_explanation
    from vipcli.trust import calibrated_softmax, prediction_set

    method, device = predictor.method, predictor.backbone.device
    with torch.no_grad():
        logits = prepared_logits(method, features, device).cpu()  # [N, C], as training evaluated
    probabilities = calibrated_softmax(logits, predictor.calibration)  # [N, C], temperature applied
    predictions = []
    for row, name in enumerate(names):
        best = int(probabilities[row].argmax())
        explanation = kept_by(method, "explain", method.explain, features[row].to(device)) if explain else None
        check_explanation(method, explanation)
        predictions.append(Prediction(
            name, predictor.class_names[best], float(probabilities[row, best]),
            {n: float(p) for n, p in zip(predictor.class_names, probabilities[row].tolist())}, explanation,
            prediction_set(probabilities[row], predictor.class_names, cutoff),
        ))
    return predictions


@dataclass
class FileRun:
    """What `predict_to_file` did (on rank 0, the merged file; on other ranks, only their share)."""

    out: Path
    images: int  # input images
    already: int  # images with a record before this run (skipped)
    predicted: int  # records this process wrote (predictions and errors)
    merged: object | None = None  # vipcli.prediction_files.MergeSummary, on rank 0 only


def record_format(out: Path, class_names, coverage: float | None, explain: bool, digest: str):
    """The `RecordFormat` of the records a model of `digest` writes into `out` (JSONL or CSV by suffix)."""
    from vipcli.features import decoding_digest
    from vipcli.prediction_files import RecordFormat, output_format

    return RecordFormat(output_format(out), tuple(class_names), coverage, explain, digest,
                        decoding=decoding_digest([]), dicom_decoding=decoding_digest())  # other images, DICOM files


def check_resumable(run_dir: Path, paths: list[Path], out: Path, coverage: float | None, explain: bool) -> None:
    """Before the model loads: refuse an `out` begun by another model, for other classes, options,
    decoding rules or images, as `predict_to_file` would after loading it (a large backbone takes
    seconds to minutes to load). Reads the run's checkpoint and `out`; writes nothing."""
    from vipcli.checkpoint import read_checkpoint
    from vipcli.prediction_files import check_same_images, completed_paths, part_files

    existing = [Path(out), *part_files(out)]
    if not any(file.exists() for file in existing):
        return
    _, meta = read_checkpoint(run_dir)
    form = record_format(out, meta["class_names"], coverage, explain, model_digest(run_dir)).resuming(existing)
    check_same_images(completed_paths(out, form), list({str(p): p for p in paths}), out)


def shared_view(out: Path, paths: list[Path], form) -> dict:
    """What every rank must see alike under torchrun (`distributed.agree_with_rank_zero`): the absolute
    --out, the text of its lock file (rank 0 holds it: a node that does not share rank 0's --out folder
    sees none), the records it writes (`form`: the options and model that shape them), and the images
    in order (their number and a digest of their paths)."""
    from vipcli.distributed import paths_view
    from vipcli.locks import lock_file
    from vipcli.prediction_files import coverage_text

    try:
        lock = lock_file(out).read_text(encoding="utf-8", errors="replace")
    except OSError:
        lock = ""
    records = (f"--coverage {coverage_text(form.coverage) if form.sets else 'none'}, "
               f"{'with' if form.explain else 'no'} --explain, model {form.model[:12]}")
    return {"out": os.path.abspath(out), "lock": lock, "records": records, "images": paths_view(map(str, paths))}


def predict_to_file(predictor: Predictor, paths: list[Path], out: Path, world=None, force: bool = False,
                    explain: bool = False, cache=None, workers: int = 2, batch_size: int = 64, progress=None,
                    coverage: float | None = None, chunk: int | None = None) -> FileRun:
    """Stream one record per image into `out` (JSONL or CSV by suffix), resuming what it already holds.

    In a world of several ranks (torchrun), every rank reads what `out` and its part files hold,
    waits for the others, takes its contiguous share of the images still to do, and appends to its
    own part file; rank 0 then merges everything into `out` in input order.

    Args:
        world: a vipcli.distributed.World (None: a world of one).
        force: start over (remove `out` and its part files first).

    The caller holds `out`'s lock (`vipcli.locks.output_lock`, on rank 0) so that no other
    process writes it meanwhile; `vip predict` takes it before loading the model.
    """
    from vipcli import distributed
    from vipcli.prediction_files import (RecordWriter, changed_images, check_same_images, finish_output, part_file,
                                         part_files, recorded_digests, remove_outputs)
    from vipcli.trust import set_threshold
    from vipcli.version_log import VersionLog, remove_logs, trust_logged_versions

    world = world or distributed.World()
    paths = list({str(p): Path(p) for p in paths}.values())  # an image given twice is recorded once
    form = record_format(out, predictor.class_names, coverage, explain, predictor.model_digest)
    set_threshold(predictor.calibration, coverage, predictor.run_dir)  # refuses before any work
    distributed.agree_with_rank_zero(world, lambda: shared_view(out, paths, form))  # before --force removes anything
    if force and world.main:
        remove_outputs(out)
    distributed.barrier(world, "the start of predicting")  # --force done before anyone reads
    existing = [Path(out), *part_files(out)]
    form = form.resuming(existing)  # a CSV begun by an earlier vip goes on in its layout
    recorded = recorded_digests(out, form)  # refuses a file of other classes, options, model or decoding rules
    done = set(recorded)  # the images with a prediction record
    check_same_images(done, paths, out)  # and one begun for other images (finishing it would drop them)
    if done and world.main and form.unchecked_coverage(existing):
        from vipcli.prediction_files import coverage_text

        console.warn(f"{out} was begun by an earlier vip, whose records do not say their coverage: its sets are "
                     f"taken to be at --coverage {coverage_text(coverage)} too (pass --force to start it afresh "
                     "if they are not)")

    def check_recorded(advance):  # on rank 0: the images whose versions the logs hold unchanged are not read
        if recorded:
            trust_logged_versions(out)
        else:  # a FILE begun afresh (removed by hand): its logs begin afresh too, so they never outgrow it
            remove_logs(out)
        return changed_images(recorded, advance)

    with console.task(progress, "checking recorded images", len(done)) as advance:  # rank 0 reads their bytes
        changed, again = distributed.rank_zero_value(world, lambda: check_recorded(advance))
    if again and world.main:
        warn_changed_images(out, again)
    distributed.barrier(world, "the start of predicting")  # everyone has read before anyone writes
    done -= set(again)
    remaining = [p for p in paths if str(p) not in done]
    mine = [remaining[i] for i in distributed.shard(len(remaining), world)]
    target = part_file(out, world.rank, world.size) if world.distributed else out
    with RecordWriter(target, form) as writer, VersionLog(out, world.rank) as versions, \
            console.task(progress, "predicting", len(mine)) as advance, \
            contextlib.closing(stream_predictions(predictor, mine, explain, cache, workers, batch_size, advance,
                                                  coverage, chunk)) as results:
        for path, prediction, reason, sha256 in results:
            if prediction is None:
                writer.error(path, reason)
            else:
                writer.prediction(prediction, sha256)
                versions.note(path, sha256)  # after its record: a resume need not read the image while it is unchanged
    header_size = len(form.header_line().encode("utf-8"))
    if world.distributed and writer.written == 0 and target.exists() and target.stat().st_size <= header_size:
        target.unlink()  # nothing of this rank's to merge
    distributed.barrier(world, "the end of predicting")  # every part is complete
    run = FileRun(Path(out), len(paths), len(paths) - len(remaining), writer.written)
    if world.main:
        run.merged = finish_output(out, paths, form, changed)
    return run


def warn_changed_images(out: Path, changed: list[str]) -> None:
    """Say that `changed` images of `out`, whose bytes are not those their records name, are predicted again."""
    from rich.markup import escape

    count, many = len(changed), len(changed) > 1
    console.warn(escape(f"{console.counted(count, 'image')} in {out} changed since {'they were' if many else 'it was'} "
                        f"predicted ({'e.g. ' if many else ''}{changed[0]} holds other bytes under the same path): "
                        f"predicted again, {'their records' if many else 'its record'} replaced"))
