"""Frozen image features: each image decoded once, each view encoded once, cached on disk.

Nothing trainable in ViP touches the image side, so the image encoder's output for every
(image, augmented view) pair can be computed once and reused across epochs, runs and methods.

A cache entry is a pure function of its key, so a run's result never depends on what ran before:
- augmented view k of an image is drawn with an RNG seeded from (the image's content digest, k,
  the augmentation's identity), never from the run's seed or from what was drawn earlier;
- entries live under `<cache>/features/<backbone key>/`, where the backbone key digests the
  backbone id, its class and plugin code, its fingerprint, its image transforms, the image decoding
  rules, library versions and vip's own code (`installation_identity`) and the precision the encoder ran in (bf16
  autocast on CUDA), so a cache shared by a GPU and a CPU machine never hands one the other's features;
- each entry stores its identity in its safetensors header (image path and content digest,
  backbone key, dtype, feature size, view count, sha256 of its features) and is checked on every
  read: an entry that fails (another image's, another backbone's, wrong shape or dtype, non-finite
  values, damaged file, features not matching their sha256) is recomputed with one warning; an entry
  of an image whose content changed, or one written without that sha256, is replaced.
One entry per image file and backbone: a changed file replaces its entry, nothing accumulates.
A cache folder that cannot be written (read-only, full disk) is warned about once and the run
goes on without it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vipcli import console, decoding
from vipcli.cache_admin import BACKBONE_FILE, default_root
from vipcli.decoding import DecodingWorkers
from vipcli.dicom import decoder_identity, is_dicom_name
from vipcli.digests import digest_many, text_digest
from vipcli.errors import ImageError
from vipcli.image_fit import DEFAULT_FIT, image_transform
from vipcli.images import holds_second_picture, load_image
from vipcli.pixels import ViewPipeline, view_pipeline
from vipcli.preflight import describe_os_error, held_open
from vipcli.stop_signals import stop_if_received

# moved to vipcli.decoding; the names stay here for code that imported them from this module
worker_ignores_sigterm, workers_stopped_after = decoding.worker_ignores_sigterm, decoding.workers_stopped_after

DECODE_MIN_SIDE = 512  # images much larger than this are decoded at a reduced scale
FEATURE_FORMAT = "vip-features"
FEATURE_FORMAT_VERSION = "2"
CLEARED_RETRIES = 3  # writes of an entry again after another process's `vip cache clear` removed its folder
# a temp file this old in a cache shard was left by a killed write (one takes milliseconds); removing a
# stalled writer's file is safe too: its rename fails with FileNotFoundError and put() writes again
STALE_TEMP_SECONDS = 10


def default_cache_dir() -> Path:
    """`$VIP_CACHE_DIR`, else the platform's user cache folder for vip."""
    return default_root()


def _stable_repr(value) -> str:
    """repr() without memory addresses, so the same transform has the same text in every process."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


def backbone_identity(backbone, fit: str = DEFAULT_FIT) -> dict:
    """Everything cached features depend on besides the image (JSON-serialisable): the backbone's own
    identity (for a third-party backbone also the `--arch`/`--pretrained` it was built with, `built_with`),
    `installation_identity` (the feature format, the image decoder, the library versions) and the image fit
    (`vipcli.image_fit`: absent for `crop`, so that its keys are those of the vips before the option)."""
    from vipcli.devices import autocast_dtype
    from vipcli.plugins import plugin_source_digest

    kind = type(backbone)
    identity = {
        "id": str(getattr(backbone, "id", "") or ""),
        "class": f"{kind.__module__}.{kind.__qualname__}",
        "code": plugin_source_digest(kind),  # an edited plugin (an editable install too) encodes afresh
        "fingerprint": backbone.fingerprint(),
        "eval_transform": _stable_repr(image_transform(backbone, False, fit)),
        "train_transform": _stable_repr(image_transform(backbone, True, fit)),
        **installation_identity(),
    }
    if fit != DEFAULT_FIT:  # pad, squash: their own entries (their transforms differ too); crop's keys unchanged
        identity["image_fit"] = fit
    built_with = getattr(backbone, "built_with", None)
    if isinstance(built_with, dict):  # a third party's --arch/--pretrained (absent for vip's own: keys unchanged)
        identity["options"] = built_with
    dtype = autocast_dtype(getattr(backbone, "device", "cpu"))
    if dtype is not None:  # features encoded under bf16 autocast (CUDA) are not float32 ones: own entries
        identity["autocast"] = str(dtype).removeprefix("torch.")  # absent for float32: existing keys unchanged
    return identity


def installation_identity() -> dict:
    """The part of `backbone_identity` that this installation alone decides (the feature format, the
    image decoder, the library versions, vip's own code): `vip cache info` calls a folder that records
    other values one this installation never reads again. The class, code and fingerprint need the backbone.

    `vip_code` digests every module of `vipcli`: the pipeline from file to pixels and the backbone contract are
    there, and a backbone of vip's own imports from it, so an edit to it (an editable install too) or an
    upgrade of vip encodes afresh, whatever the version says."""
    import torchvision

    from vipcli.source_imports import package_source_digest

    return {"format": f"{FEATURE_FORMAT} {FEATURE_FORMAT_VERSION}", **decoding_rules(),
            "torchvision": torchvision.__version__, **image_library_versions(),
            "vip_code": package_source_digest("vipcli")}


def decoding_rules() -> dict:
    """The rules by which vip turns an image file into pixels, library versions aside: the decoding
    size, the EXIF orientation and the bit depth. Part of every feature-cache key (`installation_identity`),
    and of a benchmark's record (`features.decoding_digest`, which adds the DICOM rule where a DICOM file is read)."""
    from vipcli import images  # read when asked: the policies' one home

    return {"decode": f"{images.DECODE_POLICY}, min side {DECODE_MIN_SIDE}",
            "orientation": images.ORIENTATION_POLICY, "depth": images.DEPTH_POLICY}


def decoding_digest(paths=None) -> str:
    """A short digest of the rules by which images become pixels (decoding size, orientation, bit depth,
    DICOM): a sweep resumed by a vip that reads images otherwise would mix rows of other pixels. Library
    versions (torch, Pillow, pydicom) are left out: a sweep may go on across a library upgrade, whose
    features the cache keeps apart.

    Args:
        paths: the images read; the DICOM rule counts only when one of them is a DICOM file (as in the
            feature cache), so a change of it leaves sweeps and `--out` files of other images resumable.
            None: the rules for every kind of image.
    """
    from vipcli.dicom import DICOM_POLICY, is_dicom_name

    dicom = paths is None or any(is_dicom_name(path) for path in paths)
    rules = json.dumps({**decoding_rules(), **({"dicom": DICOM_POLICY} if dicom else {})}, sort_keys=True)
    return text_digest(rules)


# the DICOM rule until 2026-11-29 11:50 (a Presentation LUT Shape of INVERSE was not applied): only the
# digests of sweeps and --out files begun then hold it, and they are read for images other than DICOM files
EARLIER_DICOM_POLICY = ("one frame; grayscale: modality LUT, then the VOI LUT or first window (else own min..max) "
                        "to 0..255, MONOCHROME1 inverted; colour (RGB, YBR, palette) to 8-bit RGB")


def same_decoding(recorded: str, current: str) -> bool:
    """Whether `recorded`, the decoding digest of a sweep or an `--out` file, names the rules that `current`
    (a `decoding_digest` of today) does.

    Builds of 2026-11-29 wrote it otherwise, always with the DICOM rule: until 11:19 the rules joined by
    newlines, until 12:25 the JSON of today with "dicom" added. Their digest of images other than DICOM
    files is matched when today's rules give it (with their DICOM rule of then, which those images never
    met); images with a DICOM file among them need today's digest itself.
    """
    if recorded == current or current != decoding_digest([]):
        return recorded == current
    from vipcli import images
    from vipcli.dicom import DICOM_POLICY

    rules, earlier = decoding_rules(), set()
    for dicom in (EARLIER_DICOM_POLICY, DICOM_POLICY):
        earlier.add(json.dumps({**rules, "dicom": dicom}, sort_keys=True))
        earlier.add("\n".join([images.DECODE_POLICY, str(DECODE_MIN_SIDE), images.ORIENTATION_POLICY,
                               images.DEPTH_POLICY, dicom]))
    return recorded in {text_digest(text) for text in earlier}


def image_library_versions() -> dict:
    """The versions of the libraries that decode, resize and encode images (torch, Pillow and its JPEG
    library): an upgrade can change features in their last digits, so features are cached per version."""
    import PIL
    import torch
    from PIL import features as pil_features

    try:
        jpeg = pil_features.version("libjpeg_turbo") or pil_features.version("jpg") or ""
    except Exception:  # noqa: BLE001 - an unusual Pillow build: its version alone then
        jpeg = ""
    return {"torch": torch.__version__, "pillow": PIL.__version__, "libjpeg": jpeg}


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def backbone_key(identity: dict) -> str:
    """The folder name of a backbone's entries: `<id>-<digest of its identity>`."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", identity.get("id") or "backbone").strip("._") or "backbone"
    return f"{name[:40]}-{_digest(identity)[:16]}"


MPO_DECODE = "mpo-decoded-reduced"  # the mark of a two-picture JPEG's entries (entry_content)


def entry_content(path: Path, content: str) -> str:
    """What the cache entry of image `path` (bytes of digest `content`) is checked against: the digest,
    and for a DICOM file also how this installation decodes DICOM (`vipcli.dicom.decoder_identity`:
    the rule and the versions of pydicom and its plugins). A change of those re-encodes DICOM images
    alone; other images keep their entries, and every image keeps its view seeds (`view_seed`).
    A JPEG holding a second picture (an MPO) is marked too: since 0.2.0 it is decoded reduced like any
    JPEG, and entries of its earlier full-size decode must not be mixed with new ones."""
    if is_dicom_name(path):
        return f"{content} {decoder_identity()}"
    return f"{content} {MPO_DECODE}" if holds_second_picture(path) else content


def entry_path(path: Path) -> str:
    """The resolved path of image `path` as its cache entry records it: UTF-8 text whatever the file
    system holds (a name in Latin-1 or CP1252 from an old archive shows its undecodable bytes as
    `\\xe9`); a path of valid UTF-8, i.e. almost all, is recorded as it is."""
    return os.fsencode(os.path.realpath(path)).decode("utf-8", "backslashreplace")


def view_seed(content: str, view: int, augmentation: str) -> int:
    """The RNG seed of augmented view `view` of the image whose content digest is `content`."""
    return int(hashlib.sha256(f"{content}|{view}|{augmentation}".encode()).hexdigest()[:16], 16)


@contextlib.contextmanager
def seeded(seed: int):
    """Run the block with torch's CPU generator, numpy and `random` seeded by `seed`; restore their states after.

    Only the CPU generator: the views are drawn on the CPU, and `torch.manual_seed` also seeds every
    device's generator, which `fork_rng(devices=[])` does not restore (and, before CUDA starts, records
    a traceback per call: about 0.3 ms of each view's 3 ms on this project's 2-core machine).
    """
    import random

    import numpy as np

    with cpu_generators_kept():
        torch.default_generator.manual_seed(seed)  # what torch.manual_seed does for the CPU
        random.seed(seed)
        np.random.seed(seed % 2**32)
        yield


@contextlib.contextmanager
def cpu_generators_kept():
    """Run the block, then put torch's CPU generator and numpy's and `random`'s global ones back as they were
    (`seeded` seeds them inside; the device probe runs a plugin's code there)."""
    import random

    import numpy as np

    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _under_torchrun() -> bool:
    """True in a world of several ranks, where --no-cache is refused."""
    from vipcli.distributed import world_from_env

    return world_from_env().distributed


class FeatureCache:
    """Per-image safetensors entries holding `eval` [D] and `train` [V, D] features, checked on read.

    Args:
        root: the cache root (None: features are computed but not kept).
        backbone: the frozen backbone whose features are cached.
        fit: how images are fitted into the encoder's square (`vipcli.image_fit`): `encode_images` encodes
            under the fit of the cache it is given; each fit has its own entries.
    """

    def __init__(self, root: Path | None, backbone, fit: str = DEFAULT_FIT):
        self.fit = fit
        self.identity = backbone_identity(backbone, fit)
        self.key = backbone_key(self.identity)
        # what a view's pixels depend on besides the image: the augmentation and the decoder
        self.augmentation = _digest([self.identity["train_transform"], self.identity["decode"],
                                     self.identity["torchvision"]])[:16]
        self.dim = getattr(backbone, "embed_dim", None)
        self.describe = backbone.describe()
        self.folder = None if root is None else Path(root) / "features" / self.key
        self.writable = self.folder is not None
        self._warned: set[str] = set()
        self._swept: set[Path] = set()  # shard folders whose stale temp files this process removed

    def entry_file(self, path: Path) -> Path:
        """Where the entry of image `path` lives (one per resolved path)."""
        name = hashlib.sha256(os.fsencode(os.path.realpath(path))).hexdigest()[:32]
        return self.folder / name[:2] / f"{name}.safetensors"

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            from rich.markup import escape

            self._warned.add(kind)
            console.warn(escape(message))

    def get(self, path: Path, content: str) -> dict[str, torch.Tensor]:
        """The checked entry of `path` whose bytes have digest `content` ({} on a miss or when off);
        `content` is `entry_content`'s (a DICOM file's also names how DICOM is decoded)."""
        if self.folder is None:
            return {}
        from safetensors import SafetensorError, safe_open

        file = self.entry_file(path)
        try:
            with safe_open(str(file), framework="pt") as handle:
                header = handle.metadata() or {}
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        except FileNotFoundError:
            return {}
        except PermissionError as error:
            self._warn_once("read", f"cannot read the feature cache {self.folder} ({_reason(error)}); "
                            "features are computed afresh")
            return {}
        except (OSError, SafetensorError, ValueError, RuntimeError) as error:
            self._warn_damaged(file, path, f"unreadable file: {type(error).__name__}")
            return {}
        problem = self.entry_problem(header, tensors, path)
        if problem:
            self._warn_damaged(file, path, problem)
            return {}
        if header.get("content_sha256") != content:  # the image changed: its entry is replaced
            return {}
        if "features_sha256" not in header:  # written before entries carried a checksum: encoded afresh
            return {}
        if header["features_sha256"] not in (features_digest(tensors), features_digest(tensors, False)):  # flipped bits
            self._warn_damaged(file, path, "its features do not match their checksum")
            return {}
        return tensors

    def _warn_damaged(self, file: Path, path: Path, problem: str) -> None:
        self._warn_once("damaged", f"feature cache entry {file} of {path} is damaged ({problem}); recomputing it "
                        "(further damaged entries are recomputed without a warning)")

    def entry_problem(self, header: dict, tensors: dict, path: Path) -> str:
        """Why an entry cannot be trusted for image `path` ("" if it can)."""
        if header.get("format") != FEATURE_FORMAT or header.get("format_version") != FEATURE_FORMAT_VERSION:
            return "not a vip feature entry of this version"
        if header.get("backbone") != self.key:
            return f"made for backbone {header.get('backbone')!r}"
        if header.get("path") != entry_path(path):
            return f"holds the features of {header.get('path')!r}"
        if not tensors or set(tensors) - {"eval", "train"}:
            return f"unexpected tensors {sorted(tensors)}"
        dim = header.get("dim")
        if not dim or not dim.isdigit() or (self.dim and int(dim) != self.dim):
            return f"feature size {dim!r}"
        views = header.get("views", "")
        expected = {"eval": (int(dim),), "train": (int(views) if views.isdigit() else -1, int(dim))}
        for name, tensor in tensors.items():
            if tensor.dtype != torch.float32 or header.get("dtype") != "float32":
                return f"'{name}' is {tensor.dtype}, not float32"
            if tuple(tensor.shape) != expected[name]:
                return f"'{name}' has shape {list(tensor.shape)}, expected {list(expected[name])}"
            if not bool(torch.isfinite(tensor).all()):
                return f"'{name}' holds NaN or infinite values"
        return ""

    def put(self, path: Path, content: str, tensors: dict[str, torch.Tensor]) -> None:
        """Store `tensors` of image `path` (content digest `content`) atomically, replacing its old entry.

        A cache that cannot be written (read-only, full, gone) is warned about once and not used again.
        """
        if self.folder is None or not self.writable:
            return
        from vipcli.atomic import safetensors_bytes

        tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
        views = tensors["train"].shape[0] if "train" in tensors else 0
        dim = next(iter(tensors.values())).shape[-1]
        header = {"format": FEATURE_FORMAT, "format_version": FEATURE_FORMAT_VERSION, "backbone": self.key,
                  "path": entry_path(path), "content_sha256": content, "dtype": "float32",
                  "dim": str(dim), "views": str(views), "features_sha256": features_digest(tensors)}
        data = safetensors_bytes(tensors, header)  # written by Python: a full disk is an OSError
        for attempt in range(CLEARED_RETRIES + 1):
            try:
                self._write_entry(self.entry_file(path), data)
                return
            except (FileNotFoundError, FileExistsError) as error:  # a `vip cache clear` elsewhere removed a folder
                if attempt == CLEARED_RETRIES:
                    self._stop_writing(error)
            except OSError as error:
                if not held_open(self.entry_file(path), error):  # (held: another vip on Windows reads the entry,
                    self._stop_writing(error)  # which it wrote too, or which is replaced on its next write)
                return

    def _write_entry(self, target: Path, data: bytes) -> None:
        """Write the bytes of one entry to `target` in one rename (backbone.json first, folders made)."""
        from vipcli.atomic import atomic_path

        self._write_identity()
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target, durable=False) as temp:  # the user's umask, one rename; sha256-checked
            temp.write_bytes(data)
        if target.parent not in self._swept:
            self._swept.add(target.parent)
            remove_stale_temps(target.parent)

    def _stop_writing(self, error: OSError) -> None:
        """Warn once that the cache cannot be written and write no more entries this run."""
        self.writable = False
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        fix = "free some space or run `vip cache clear`" if full else "set VIP_CACHE_DIR to a writable folder"
        if not _under_torchrun():  # there --no-cache is refused: the ranks share features through the cache
            fix += ", or pass --no-cache"
        self._warn_once("write", f"cannot write the feature cache {self.folder} ({describe_os_error(error)}); "
                        f"going on without it ({fix})")

    def _write_identity(self) -> None:
        """backbone.json: what this folder's entries were made with (read by `vip cache info`)."""
        file = self.folder / BACKBONE_FILE
        if file.exists():
            return
        from vipcli.atomic import write_atomic

        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(file, json.dumps({**self.identity, "describe": self.describe}, indent=1, default=str))


def features_digest(tensors: dict[str, torch.Tensor], named_dtypes: bool = True) -> str:
    """A sha256 (hex) of an entry's tensors (float32, on the CPU): their names, dtypes, shapes and bytes.

    Stored in each entry's header and checked on every read, so an entry whose bytes changed on disk
    (a flipped bit, a bad sector, a stray write) is recomputed instead of changing a result: such
    features stay finite and of the right shape, and no other check can tell them from good ones.
    `named_dtypes=False`: as entries written on 2026-11-29 from 22:32 to 23:42 recorded it, without the
    dtype (float32 either way, so it checks as much), read as sound.
    """
    from vipcli.digests import tensors_sha256

    return tensors_sha256(tensors, torch.float32, named_dtypes)


def remove_stale_temps(shard: Path, older_than: float = STALE_TEMP_SECONDS) -> int:
    """Remove the temp files that writes killed midway left in a cache shard folder (once per shard
    and process, on its first write), if older than `older_than` seconds: a younger one may be
    another process's write under way. Returns how many were removed.
    """
    from vipcli.cache_admin import FEATURE_ENTRY

    removed, now = 0, time.time()
    try:
        with os.scandir(shard) as entries:
            candidates = [entry for entry in entries if entry.name.endswith(".tmp")]
    except OSError:
        return 0
    for entry in candidates:
        try:
            if FEATURE_ENTRY.fullmatch(entry.name) and now - entry.stat().st_mtime > older_than:
                os.unlink(entry.path)
                removed += 1
        except OSError:  # gone already (another process swept it) or not ours to remove
            continue
    return removed


@dataclass
class EncodedImages:
    """Features of a list of images, in the order given."""

    eval: dict[int, torch.Tensor] = field(default_factory=dict)  # index -> [D] center-crop view
    train: dict[int, torch.Tensor] = field(default_factory=dict)  # index -> [V, D] augmented views
    failures: dict[Path, str] = field(default_factory=dict)  # unreadable file -> reason
    encoded: int = 0  # views that went through the image encoder (cache misses)
    contents: dict[int, str] = field(default_factory=dict)  # index -> sha256 of the bytes its features were taken for
    readable: set[int] = field(default_factory=set)  # indices with every requested feature
    blocks: dict[str, torch.Tensor] = field(default_factory=dict)  # "eval" [N, D], "train" [N, V, D]: what
    # `eval` and `train` hold are rows of these, so a data set's features are one tensor, not N small ones

    def take(self, index: int, entry: dict, views: int, center: bool, count: int) -> None:
        """Record the features of image `index` (of `count`) from its cache entry (`eval` [D], `train`
        [V', D]) when it holds every one asked for (the center view if `center`, `views` augmented views);
        they are copied into a row of the split's blocks, and the entry can be let go."""
        has_views = entry.get("train", torch.empty(0)).shape[0] >= views
        if not ((not center or "eval" in entry) and has_views and (center or views)):
            return
        self.readable.add(index)
        if "eval" in entry:
            self._keep("eval", index, entry["eval"], count)
        if views:
            self._keep("train", index, entry["train"][:views], count)

    def _keep(self, name: str, index: int, features: torch.Tensor, count: int) -> None:
        block = self.blocks.get(name)
        if block is None:  # made at the first image, whose features give its shape; rows never filled stay unpaged
            block = self.blocks[name] = torch.empty((count, *features.shape), dtype=features.dtype)
        block[index] = features
        getattr(self, name)[index] = block[index]

    def pop_rows(self, name: str, rows: list[int]) -> torch.Tensor | None:
        """The `name` features ("eval" or "train") of images `rows` (ascending indices) as one tensor
        [len(rows), ...], made in place in the block: each row moves up over the rows of the images left
        out, so the features are never copied whole. They are taken out of this object (its `name` dict
        is emptied). None when `rows` is empty or an image of them has no such features."""
        features = getattr(self, name)
        if not rows or any(index not in features for index in rows):
            return None
        block = self.blocks.pop(name)
        for row, index in enumerate(rows):
            if row != index:  # index > row: the rows before it are already in place
                block[row] = block[index]
        features.clear()
        return block[: len(rows)]


class ViewDecoder(torch.utils.data.Dataset):
    """Decode images once each and make the views still missing from the cache; indexed by a group of jobs
    itself, each (index, path, content digest, need the center view, first view, views to make), so one set of
    decoding workers (`vipcli.decoding.DecodingWorkers`) serves every list of jobs of a backbone and image fit.

    A group's views travel to the main process as one tensor: each tensor a worker hands over costs a
    few system calls (its shared memory's file descriptor is sent, received, mapped and closed), which
    bounded a one-view-per-image `vip predict` at about 1,300 images/s on this project's 2-core machine
    with nothing decoded at all, 4,500 in groups of 16.

    View k of an image is drawn under `view_seed(content digest, k, augmentation)`, so it is the
    same whichever process, run or order computes it.
    """

    def __init__(self, evaluation: ViewPipeline, training: ViewPipeline, augmentation: str):
        self.evaluation, self.training = evaluation, training  # PIL image -> view (`ViewPipeline.make`)
        self.augmentation = augmentation

    def __getitem__(self, group):
        """(decoded: [(index, views made, why the image is unreadable or None)], views [sum n, 3, H, W] or None)."""
        decoded, views = [], []
        for index, path, content, need_eval, first, count in group:
            try:
                image = load_image(path, min_side=DECODE_MIN_SIDE)
            except ImageError as error:
                decoded.append((index, 0, error.reason or "unreadable"))
                continue
            made = [self.evaluation.make(image)] if need_eval else []
            for k in range(first, first + count):
                with seeded(view_seed(content, k, self.augmentation)):
                    made.append(self.training.make(image))
            decoded.append((index, len(made), None))
            views.extend(made)
        return decoded, torch.stack(views) if views else None  # uint8 when the pipelines finish them


GROUP_VIEWS = 16  # views decoded together and handed over as one tensor (fewer for a list too short to share)


def view_groups(jobs: list, workers: int) -> list[tuple]:
    """`jobs` in order, cut into groups of about GROUP_VIEWS views, fewer where the list is short, so that
    every worker still gets about four groups."""
    views = [int(need_eval) + count for _, _, _, need_eval, _, count in jobs]
    target = max(1, min(GROUP_VIEWS, sum(views) // (4 * max(1, workers))))
    groups, group, size = [], [], 0
    for job, n in zip(jobs, views):
        group.append(job)
        size += n
        if size >= target:
            groups.append(tuple(group))
            group, size = [], 0
    return groups + [tuple(group)] if group else groups


@torch.no_grad()
def _encode(backbone, images: torch.Tensor, pipeline: ViewPipeline) -> torch.Tensor:
    """Features [B, D] (float32, on the CPU) of views [B, 3, H, W] made by `pipeline`."""
    return _encode_batch(backbone, pipeline.finish(images, backbone.device))


@torch.no_grad()
def _encode_batch(backbone, batch: torch.Tensor) -> torch.Tensor:
    """Features [B, D] (float32, on the CPU) of a finished batch [B, 3, H, W] on the backbone's device."""
    from vipcli.devices import autocast
    from vipcli.registry import check_batch_features

    with autocast(backbone.device):
        features = backbone.encode_image(batch)
    check_batch_features(backbone, features, len(batch))  # the load-time checks encode a single image
    return features.float().cpu()  # [B, D]


def training_view_bytes(backbone, fit: str = DEFAULT_FIT) -> int:
    """Bytes of one augmented training view of `backbone` as a decoding worker hands it over (8-bit pixels, or
    the float tensor of a transform that runs whole in the workers), made from a blank image with the random
    number generators' states put back, so the run draws what it would have drawn."""
    from PIL import Image

    _, training = _pipelines(backbone, fit)
    with torch.random.fork_rng(devices=[]):
        view = training.make(Image.new("RGB", (DECODE_MIN_SIDE, DECODE_MIN_SIDE)))  # [3, H, W]
    return view.numel() * view.element_size()


def _pipelines(backbone, fit: str = DEFAULT_FIT) -> tuple[ViewPipeline, ViewPipeline]:
    """(evaluation, training) view pipelines of `backbone` under image fit `fit`; both split, or neither
    (views of one image travel stacked, so they must share a dtype)."""
    transforms = image_transform(backbone, False, fit), image_transform(backbone, True, fit)
    evaluation, training = (view_pipeline(t) for t in transforms)
    if repr(evaluation.normalize) != repr(training.normalize):  # one split and not the other, or other statistics
        return ViewPipeline(transforms[0]), ViewPipeline(transforms[1])
    return evaluation, training


def _unreadable(error: OSError) -> str:
    return "file not found" if isinstance(error, FileNotFoundError) else f"unreadable ({_reason(error)})"


def encode_images(backbone, paths, views: int = 0, cache: FeatureCache | None = None, batch_size: int = 64,
                  workers: int = 2, seed: int | None = None, advance=lambda n=1: None,
                  center: bool = True, shared: DecodingWorkers | None = None) -> EncodedImages:
    """Center-crop features of every image, plus `views` augmented views each.

    Args:
        backbone: the frozen backbone.
        paths: image files.
        views: augmented training views wanted per image (0 for evaluation sets).
        cache: where features persist between runs, and the image fit they are encoded under (None: keep
            them in memory only, with the fit `crop`).
        batch_size: images per encoder call.
        workers: DataLoader processes decoding and transforming images.
        seed: not used: view k of an image depends only on its content, k and the augmentation,
            so results never depend on which run filled the cache (kept for callers).
        advance: progress callback, called once per image.
        center: also encode the center-crop view (prompt learning needs only the augmented views
            of training images; a linear probe and evaluation need the center view).
        shared: decoding workers kept for several calls (`vipcli.decoding.DecodingWorkers`); `workers` is
            then not used.
    Returns:
        EncodedImages with features for every readable image and reasons for the others.
    """
    cache = cache or FeatureCache(None, backbone)
    paths = [Path(p) for p in paths]
    result, cached, entry_keys, jobs = EncodedImages(), {}, {}, []  # entry_keys: index -> entry_content, read once
    for index, (path, content) in enumerate(zip(paths, digest_many(paths))):
        if isinstance(content, OSError):
            result.failures[path] = _unreadable(content)
            advance()
            continue
        result.contents[index] = content
        entry_keys[index] = entry_content(path, content)  # (a JPEG's header read: once per image)
        entry = cache.get(path, entry_keys[index])
        have_views = entry.get("train", torch.empty(0)).shape[0]
        need_eval, need_views = center and "eval" not in entry, max(0, views - have_views)
        if need_eval or need_views:
            cached[index] = entry  # kept until the encoder completes it
            jobs.append((index, path, content, need_eval, have_views, need_views))
        else:
            result.take(index, entry, views, center, len(paths))
            advance()
    job_of = {job[0]: job for job in jobs}

    def store(index: int, features: torch.Tensor) -> None:  # as each batch is encoded: a stop keeps them
        _, path, _, need_eval, _, _ = job_of[index]
        entry = _merge_entry(cached.pop(index), features, need_eval)
        cache.put(path, entry_keys[index], entry)
        result.take(index, entry, views, center, len(paths))

    _encode_jobs(backbone, jobs, batch_size, workers, cache, result, advance, store, shared)
    return result


def encode_in_memory(backbone, images: list, batch_size: int = 64, fit: str = DEFAULT_FIT) -> torch.Tensor:
    """Center-crop features [N, D] (float32, CPU) of PIL images held in memory, in order; no cache.

    Each image is read as a file would be (`images.decoded_to_rgb`, the same reduced scale), then
    takes the evaluation view of the files' path under image fit `fit`, so a PNG passed open gets the
    features of its file.
    """
    from vipcli.images import decoded_to_rgb

    evaluation, _ = _pipelines(backbone, fit)
    features = []
    for start in range(0, len(images), batch_size):
        views = [evaluation.make(decoded_to_rgb(image, DECODE_MIN_SIDE)) for image in images[start:start + batch_size]]
        features.append(_encode(backbone, torch.stack(views), evaluation))  # [B, D]
    return torch.cat(features) if features else torch.empty(0, backbone.embed_dim)


def _merge_entry(old: dict, new: torch.Tensor, has_eval: bool) -> dict:
    entry = dict(old)
    if has_eval:
        entry["eval"], new = new[0], new[1:]
    if new.shape[0]:
        entry["train"] = torch.cat([old["train"], new]) if "train" in old else new  # [V, D]
    return entry


def _encode_jobs(backbone, jobs, batch_size, workers, cache, result, advance, store, shared=None) -> None:
    """Run the image encoder over every missing view (under the image fit of `cache`), batching across
    images; `store(index, features [n, D])` takes each image's new views as soon as its batch is encoded,
    so that the images encoded before a Ctrl-C, a SIGTERM (a job's time limit) or a failure are cached,
    not encoded again."""
    if not jobs:
        return
    make = lambda: ViewDecoder(*_pipelines(backbone, cache.fit), cache.augmentation)  # noqa: E731
    decoder = shared.decoder_for((backbone, cache.fit, cache.augmentation), make) if shared is not None else make()
    training = decoder.training
    pending: list[tuple[int, torch.Tensor]] = []
    keep: dict = {}  # the float batch buffer `finish_many` reuses

    def flush():
        if not pending:
            return
        batch = training.finish_many([views for _, views in pending], backbone.device, keep)  # [sum n, 3, H, W]
        parts = [_encode_batch(backbone, part) for part in batch.split(batch_size)]  # more: one image's views alone
        features = parts[0] if len(parts) == 1 else torch.cat(parts)  # [sum n, D]; at most --encode-batch a call
        if features.untyped_storage().data_ptr() == batch.untyped_storage().data_ptr():
            features = features.clone()  # a plugin whose features view its input: the buffer is reused
        result.encoded += features.shape[0]
        for (index, views), chunk in zip(pending, features.split([v.shape[0] for _, v in pending])):
            store(index, chunk)
        pending.clear()

    path_of = {job[0]: job[1] for job in jobs}
    workers = shared.workers if shared is not None else decoding.decoding_workers(len(jobs), workers)
    with decoding.decoded(decoder, view_groups(jobs, workers), workers, shared) as batches:
        for decoded, views in batches:  # views: [sum n, 3, H, W] of the group's readable images
            stop_if_received()  # a Ctrl-C or SIGTERM Python swallowed while the decoding workers started
            start = 0
            for index, count, reason in decoded:
                advance()
                if reason is not None:
                    result.failures[path_of[index]] = reason
                    continue
                held = sum(v.shape[0] for _, v in pending)
                if pending and held + count > batch_size:
                    flush()  # a call of at most --encode-batch views, of whole images where they fit
                    held = 0
                pending.append((index, views[start:start + count]))
                start += count
                if held + count >= batch_size:
                    flush()
    flush()


class FreshViews(torch.utils.data.Dataset):
    """The reference mode's data: decode and augment every image again on each access."""

    def __init__(self, paths, labels, transform):
        self.paths, self.labels, self.transform = list(paths), list(labels), transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(load_image(self.paths[i], min_side=DECODE_MIN_SIDE)), self.labels[i]


def iterate_fresh_features(backbone, paths, labels, train: bool, batch_size: int, workers: int, seed: int,
                           fit: str = DEFAULT_FIT):
    """Yield (features [B, D], labels [B]) re-encoding every image now, under image fit `fit` (reference mode)."""
    pipeline = view_pipeline(image_transform(backbone, train, fit))
    dataset = FreshViews(paths, labels, pipeline.make)
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=train, num_workers=decoding.decoding_workers(len(dataset), workers),
        generator=generator, worker_init_fn=decoding.worker_ignores_sigterm,
    )
    with decoding.workers_stopped_after(loader) as batches:
        for images, batch_labels in batches:
            yield _encode(backbone, images, pipeline), batch_labels
