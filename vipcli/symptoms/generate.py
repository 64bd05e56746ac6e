"""The Visual Symptom Generator end to end: text stage, optional image stage, agreement, pack.

`generate_pack(config)` asks the LLM and returns a validated pack plus a report of what was kept
and dropped; `write_pack(pack, path, force)` writes it atomically. Neither prints anything.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from vipcli.errors import UsageError, VipError
from vipcli.packs import SymptomPack, pack_from_dict, shipped_packs
from vipcli.symptoms.agree import DEFAULT_THRESHOLD, Agreement, agree_by_judgement, agree_by_overlap, judge_prompt
from vipcli.symptoms.cache import cache_dir, cache_key, read_cached, write_atomic, write_cached
from vipcli.symptoms.llm import (FILTERED, MAX_ANSWER_BYTES, STOPPED_AT_LIMIT, LLMConfig, TemperatureRefused, chat,
                                 endpoint_host, read_api_key, redact, secrets_of)
from vipcli.symptoms.parse import CUT_HINT, CUT_REASON, AnswerError, ParsedAnswer, parse_answer
from vipcli.symptoms.run_memory import first_in_run, one_run, refused_temperature, remember_refusal

# the paper's questions, and "Answer in English." (CLIP's tokenizer and training captions are English)
STAGE1_PROMPT = (
    "I am going to use CLIP, a vision-language model, to detect {disease} in {modality}. "
    "What are useful medical visual features for diagnosing {disease}? "
    "List them in bullet points, in plain words that CLIP understands. Avoid words such as {disease}. "
    "Answer in English."
)
STAGE2_PROMPT = (
    "This image is a 4x4 grid of 16 {modality} of {disease}. "
    "What are the visual features of color, shape and texture of this {disease} image? "
    "List them in bullet points, in plain words that CLIP understands. Avoid words such as {disease}. "
    "Answer in English."
)
JUDGES = ("overlap", "llm")


def _quiet(_: str) -> None:
    """The default `notify`: say nothing."""


RETRY_HINT = "try another --model or a clearer --modality; this answer is cached, --no-cache asks again"


@dataclass(frozen=True)
class GenerateConfig:
    """One disease to describe, and how."""

    disease: str  # class name as it should appear in the pack, e.g. "melanoma"
    modality: str  # what the images are, e.g. "dermoscopic images"
    n: int = 4  # symptoms to keep (the paper keeps 4)
    images: Path | None = None  # folder of this class's images; enables stage 2 (vision)
    image_files: tuple[Path, ...] = ()  # or the class's images one by one (its training split); `images` names them
    llm: LLMConfig = field(default_factory=LLMConfig)  # endpoint, model, key variable, retries
    judge: str = "overlap"  # how stages are matched: "overlap" (deterministic) or "llm"
    threshold: float = DEFAULT_THRESHOLD  # minimum token-overlap similarity to agree
    seed: int = 0  # which 16 images go into the grid
    use_cache: bool = True  # reuse cached answers (new answers are always cached)
    other_classes: tuple[str, ...] = ()  # the data set's other classes: items naming one are removed


@dataclass(frozen=True)
class StageAnswer:
    """One question to the LLM and what came back."""

    prompt: str  # the text sent
    answer: str  # the raw reply
    parsed: ParsedAnswer  # usable items and removed ones
    cached: bool  # True if the reply came from the on-disk cache
    temperature: float | None = 0.0  # the temperature it was asked at; None: the model's own (it takes no other)


@dataclass(frozen=True)
class GenerateReport:
    """What happened while generating one pack, for the user to see."""

    stage1: StageAnswer  # the text question
    stage2: StageAnswer | None = None  # the image question (with --images)
    agreement: Agreement | None = None  # kept/dropped stage-1 items (with --images)
    grid_files: tuple[str, ...] = ()  # the 16 images shown in stage 2
    grid_digests: tuple[str, ...] = ()  # their sha256, as the pack records them
    surplus: tuple[str, ...] = ()  # usable symptoms beyond --n, not kept


def default_modality(disease: str) -> str:
    """The modality of the shipped pack named `disease`; UsageError if there is none."""
    pack = next((p for p in shipped_packs() if p.matches(disease)), None)
    if pack is None or not pack.modality:
        raise UsageError(
            f"--modality is needed for {disease!r}",
            'say what the images are, e.g. --modality "dermoscopic images" or "chest X-ray images"',
        )
    return pack.modality


def ask(
    llm: LLMConfig, messages: list[dict], use_cache: bool = True, notify: Callable[[str], None] = _quiet, what: str = ""
) -> tuple[str, bool, bool, float | None]:
    """Ask the LLM, through the on-disk cache.

    A model that takes no temperature but its own (OpenAI's o1, o3, gpt-5: HTTP 400 for `temperature: 0`) is
    asked again without one, and `notify` says so; its answer is cached as one of the model's own temperature,
    found there before asking next time. Within a run (`run_memory.one_run`) its later questions are asked
    without one at once.

    Args:
        llm: endpoint settings.
        messages: chat messages.
        use_cache: read the cache first (answers are written to it either way).
        notify: told "<what>: answer from cache" or "<what>: asking <model> at <host>".
        what: names the question in `notify` lines, e.g. "melanoma, stage 1 (text)".

    Returns:
        (answer text, True if it came from the cache, why the server stopped it (`chat`'s STOPPED_AT_LIMIT,
        FILTERED or ""), the temperature it was asked at: None for the model's own).
    """
    keys = {t: cache_key(llm.base_url, llm.model, messages, t) for t in dict.fromkeys((llm.temperature, None))}
    for temperature, key in keys.items() if use_cache else ():  # at the model's own temperature after a refusal
        cached = read_cached(key)
        if cached is not None and len(cached[0].encode("utf-8", "replace")) <= MAX_ANSWER_BYTES:  # else ask again,
            notify(f"{what}: answer from cache")  # under today's limit (an older vip accepted larger answers)
            # redact: an entry written before redaction existed
            return redact(cached[0], secrets_of(llm)), True, STOPPED_AT_LIMIT if cached[1] else "", temperature
    read_api_key(llm)  # no key for OpenAI is one error line, not one after "asking gpt-4o at api.openai.com"
    without = llm.temperature is not None and refused_temperature(llm)  # refused earlier in this run: not asked again
    llm = replace(llm, temperature=None) if without else llm
    notify(f"{what}: asking {llm.model} at {endpoint_host(llm.base_url)}"
           + (" without a temperature (it refused one earlier in this run)" if without else ""))
    try:
        answer, stop = chat(llm, messages, notify=lambda line: notify(f"{what}: {line}"))
    except TemperatureRefused as refused:
        notify(f"{what}: {refused.message}: asking again without one (the model's own temperature: its answers can "
               "differ from run to run)")
        remember_refusal(llm)
        llm = replace(llm, temperature=None)
        answer, stop = chat(llm, messages, notify=lambda line: notify(f"{what}: {line}"))
    if answer.strip():
        failed = write_cached(keys[llm.temperature], answer, llm.model, stop == STOPPED_AT_LIMIT)
        if failed is not None and first_in_run("answer cache not written"):
            warn_cache_not_written(failed)
    return answer, False, stop, llm.temperature


def warn_cache_not_written(error: OSError) -> None:
    """Warn that the LLM answer cache could not be written (read-only or full): the answers already paid for are
    then asked again by the next run, whatever an error's hint says about answers being cached."""
    import errno

    from rich.markup import escape

    from vipcli import console
    from vipcli.preflight import describe_os_error

    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    fix = "free some space or run `vip cache clear`" if full else "set VIP_CACHE_DIR to a writable folder"
    console.warn(escape(f"cannot write the LLM answer cache {cache_dir()} ({describe_os_error(error)}); going on "
                        f"without it: these answers are not kept, and a rerun asks for them again ({fix})"))


def generate_pack(config: GenerateConfig, notify: Callable[[str], None] = _quiet) -> tuple[SymptomPack, GenerateReport]:
    """Run the Visual Symptom Generator for one disease.

    Args:
        config: disease, modality, --n, optional image folder, endpoint and matching settings.
        notify: called with a short line before each LLM question (for progress messages).

    Returns:
        The validated pack (not yet written) and the report of kept and dropped items.

    Raises:
        VipError: endpoint failures, unusable answers, too few symptoms, too few images.
    """
    check_config(config)
    cache_dir()  # a cache folder others can write: refused before an answer is paid for (--no-cache writes there too)
    grid = _make_grid(config)  # a bad image folder fails before paying for stage 1
    with one_run():  # a temperature refused at stage 1 is not sent again at stage 2 or to the judge
        report = GenerateReport(stage1=_ask_stage1(config, notify))
        candidates = list(report.stage1.parsed.items)
        if grid is not None:
            report, candidates = _run_stage2(config, grid, report, notify)
    report = replace(report, surplus=tuple(candidates[config.n :]))
    pack = pack_from_dict(pack_document(config, report, candidates[: config.n]), f"<{config.disease}>")
    return pack, report


def _make_grid(config: GenerateConfig):
    if config.image_files:
        from vipcli.symptoms.grid import grid_of_files

        return grid_of_files(
            config.image_files, seed=config.seed, folder=str(config.images or ""),
            where=f"class {config.disease!r}: its training images in {config.images}",
            hint="add training images of this class, or pass --text-only to skip the image question",
        )
    if config.images is None:
        return None
    from vipcli.symptoms.grid import make_grid

    return make_grid(config.images, seed=config.seed)


def _run_stage2(config: GenerateConfig, grid, report: GenerateReport, notify) -> tuple[GenerateReport, list[str]]:
    """Ask about the image grid; keep the stage-1 items it agrees with (VipError if none)."""
    stage2 = _ask_stage2(config, grid, notify)
    agreement = _agree(config, list(report.stage1.parsed.items), list(stage2.parsed.items), notify)
    kept = [m.symptom for m in agreement.kept]
    if not kept:
        raise VipError(
            f"no stage-1 symptom of {config.disease!r} agrees with the stage-2 (image) answer",
            "lower --agree-threshold, try --judge llm, or leave out --images",
        )
    return replace(report, stage2=stage2, agreement=agreement, grid_files=grid.files,
                   grid_digests=grid.digests), kept


def folder_name(folder) -> str:
    """The last name of `folder` as a pack records it: `--images .` or `..` named by the folder they
    stand for (not "" or ".."), without following links; "" when there is none."""
    return Path(os.path.abspath(folder)).name if folder else ""


def check_config(config: GenerateConfig) -> None:
    """UsageError for option values that cannot work (empty disease or --model, --n < 1, unknown --judge)."""
    if not config.llm.model.strip():  # the server would answer its own error only once asked
        raise UsageError(f"--model {config.llm.model!r}: an empty model name", "name the model, e.g. --model gpt-4o")
    if not config.disease.strip():
        raise UsageError("--disease is empty", "give the class name, e.g. --disease melanoma")
    if not re.search(r"[^\W_]", config.disease):  # e.g. "..": no name, and no pack file name either
        raise UsageError(f"--disease {config.disease!r} has no letters or digits",
                         "give the class name, e.g. --disease melanoma")
    if config.n < 1:
        raise UsageError(f"--n {config.n}: must be at least 1")
    if config.judge not in JUDGES:
        raise UsageError(f"--judge {config.judge!r}: unknown", f"choose one of: {', '.join(JUDGES)}")


def _ask_stage1(config: GenerateConfig, notify: Callable[[str], None]) -> StageAnswer:
    prompt = STAGE1_PROMPT.format(disease=config.disease, modality=config.modality)
    messages = [{"role": "user", "content": prompt}]
    answer, cached, stop, temperature = ask(config.llm, messages, config.use_cache, notify,
                                            f"{config.disease}, stage 1 (text)")
    parsed = _parse(answer, config, "stage 1", stop)
    if len(parsed.items) < config.n:
        usable = len(parsed.items)
        count = f"gave {usable} usable {'symptom' if usable == 1 else 'symptoms'}, fewer than --n {config.n}"
        cut = any(reason == CUT_REASON for _, reason in parsed.removed)
        fewer = f"pass --n {usable} to keep {'it' if usable == 1 else 'them'}, or " if usable else ""
        raise VipError(f"the stage 1 answer for {config.disease!r} {count}{removed_summary(parsed)}",
                       f"{fewer}{CUT_HINT if cut else RETRY_HINT}")
    return StageAnswer(prompt, answer, parsed, cached, temperature)


def _ask_stage2(config: GenerateConfig, grid, notify: Callable[[str], None]) -> StageAnswer:
    from vipcli.symptoms.grid import grid_data_url

    prompt = STAGE2_PROMPT.format(disease=config.disease, modality=config.modality)
    content = [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": grid_data_url(grid)}}]
    what = f"{config.disease}, stage 2 (4x4 grid of 16 images)"
    answer, cached, stop, temperature = ask(config.llm, [{"role": "user", "content": content}], config.use_cache,
                                            notify, what)
    return StageAnswer(prompt, answer, _parse(answer, config, "stage 2", stop), cached, temperature)


def _parse(answer: str, config: GenerateConfig, stage: str, stop: str = "") -> ParsedAnswer:
    """The usable items of a stage's answer (`stop`: why the server stopped it); VipError with the fix if none."""
    try:
        parsed = parse_answer(answer, config.disease, what=f"the {stage} answer for {config.disease!r}",
                              others=config.other_classes, truncated=stop == STOPPED_AT_LIMIT,
                              filtered=stop == FILTERED)
    except AnswerError as error:
        hint = error.hint or RETRY_HINT
        if stop == FILTERED and stage == "stage 2":  # the images went with the question: they may have set it off
            hint += "; or leave the images out (no --images; --text-only with --data)"
        raise VipError(error.message, hint) from None
    if not parsed.items:
        raise VipError(f"the {stage} answer for {config.disease!r} has no usable item (all removed)"
                       f"{removed_summary(parsed)}", RETRY_HINT)
    return parsed


def removed_summary(parsed: ParsedAnswer) -> str:
    """"; removed: 'item' (reason); ..." for the first three items taken out of an answer, "" when none was."""
    removed = "; ".join(f"{item!r} ({reason})" for item, reason in parsed.removed[:3])
    more = f"; and {len(parsed.removed) - 3} more" if len(parsed.removed) > 3 else ""
    return f"; removed: {removed}{more}" if removed else ""


def _agree(config: GenerateConfig, stage1: list[str], stage2: list[str], notify: Callable[[str], None]) -> Agreement:
    if config.judge == "overlap":
        return agree_by_overlap(stage1, stage2, config.threshold)
    messages = [{"role": "user", "content": judge_prompt(config.disease, stage1, stage2)}]
    answer, _, _, _ = ask(config.llm, messages, config.use_cache, notify, f"{config.disease}, agreement judge")
    return agree_by_judgement(stage1, stage2, answer)


def pack_document(config: GenerateConfig, report: GenerateReport, symptoms: list[str]) -> dict:
    """The YAML document of a generated pack, provenance included (never the API key).

    Args:
        config: what was asked.
        report: the answers and the agreement.
        symptoms: the symptoms kept.

    Returns:
        A dict in the symptom-pack format with `source.kind: llm`.
    """
    source = {
        "kind": "llm",
        "model": config.llm.model,
        "endpoint_host": endpoint_host(config.llm.base_url),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "temperature": report.stage1.temperature,  # None: the model's own, it takes no other
        "prompts": {"stage1": report.stage1.prompt},
        "raw_answers": {"stage1": report.stage1.answer},
    }
    if report.stage2 is not None:
        source["prompts"]["stage2"] = report.stage2.prompt
        source["raw_answers"]["stage2"] = report.stage2.answer
        # named by content, not by path: file and folder names often carry patient or record numbers,
        # and a pack is a file people share
        source["images"] = {"folder": folder_name(config.images),
                            "files_sha256": list(report.grid_digests), "seed": config.seed}
        if config.image_files:
            source["images"]["training_images"] = len(config.image_files)  # the 16 were drawn from these
        source["agreement"] = _agreement_document(report.agreement)
    return {
        "name": config.disease.strip(),
        "aliases": [],
        "modality": config.modality,
        "symptoms": symptoms,
        "source": source,
    }


def _agreement_document(agreement: Agreement) -> dict:
    def rows(matches):
        return [{"symptom": m.symptom, "stage2": m.best, "score": m.score} for m in matches]

    return {"method": agreement.method, "kept": rows(agreement.kept), "dropped": rows(agreement.dropped)}


def default_out_name(disease: str) -> str:
    """File name of a pack: the disease with spaces as `_` (other unsafe characters too), `.yaml`; a caller that
    writes it refuses a Windows device's name (`aux.yaml`) with `check_pack_file_name`.

    Raises:
        UsageError: nothing of the name is left for a file name (e.g. `..`), which would write a hidden `.yaml`.
    """
    stem = re.sub(r"[^\w.\-]+", "_", disease.strip()).strip("._-")
    if not stem:
        raise UsageError(f"--disease {disease!r} has no letters or digits to name its pack file after",
                         "give the class name, e.g. --disease melanoma, or pass --out FILE.yaml")
    return stem + ".yaml"


def check_pack_file_name(name: str, what: str, fix: str) -> None:
    """UsageError for a pack file `name` that Windows takes as one of its devices (`aux.yaml`, `CON.yml`, `nul`),
    on every platform: written here, it would break the pack folder on Windows (a clone, a copy, a shared drive).
    `what` names the pack ("the pack of 'aux'", "--out aux.yaml"); `fix` is the hint."""
    from vipcli.windows_names import device_name

    device = device_name(name)
    if device:
        raise UsageError(f"{what} would be the file {name}, which Windows takes as its device {device}: the pack "
                         "folder could not be copied to or opened on Windows", fix)


def pack_to_dict(pack: SymptomPack) -> dict:
    """The pack as a YAML-ready mapping in the pack format."""
    return pack.to_dict()


def render_yaml(document: dict) -> str:
    """YAML text with multi-line strings (raw answers) as readable `|` blocks."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper, value):
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def write_pack(pack: SymptomPack, path: str | Path, force: bool = False) -> Path:
    """Validate and write `pack` to `path` atomically (temp file + os.replace).

    Args:
        pack: the pack to write.
        path: destination .yaml file; its folder is created.
        force: overwrite an existing file.

    Returns:
        The path written.

    Raises:
        UsageError: the file exists and `force` is False.
    """
    import yaml

    path = Path(path)
    refuse_overwrite(path, force)
    text = render_yaml(pack_to_dict(pack))
    pack_from_dict(yaml.safe_load(text), path)  # what is written must load back as a valid pack
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
    except OSError as error:  # read-only folder or full disk: nothing half-written, one line
        from vipcli.preflight import describe_os_error

        raise VipError(f"cannot write {path} ({describe_os_error(error)})",
                       "free some space or choose a writable --out") from None
    return path


def refuse_overwrite(path: Path, force: bool) -> None:
    """VipError if `path` exists and `force` is False, or if it holds anything but symptoms: `--force` replaces a
    pack or a symptoms file, never a run's run.yaml or a file of something else."""
    if not path.exists():
        return
    if not force:
        raise VipError(f"{path} already exists; not overwriting it", "pass --force to replace it, or choose --out")
    what = not_symptoms(path)
    if what:
        raise VipError(f"{path} is not a symptom pack ({what}), and --force replaces only packs",
                       "choose another --out, or move that file away")


def not_symptoms(path: Path) -> str | None:
    """What the existing `path` is when it is not a symptom pack or {class: [symptoms]} file ("it is a folder",
    "it is the run.yaml of a vip train run", "it holds no symptoms vip can read"); None for one `--force` may
    replace (an empty file too: nothing is lost)."""
    import yaml

    from vipcli.packs import RUN_FORMAT, load_symptom_file

    if path.is_dir():
        return "it is a folder"
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return "it holds no symptoms vip can read"
    if not text.strip():
        return None
    if isinstance(data, dict) and data.get("format") == RUN_FORMAT:
        return "it is the run.yaml of a vip train run"
    try:
        load_symptom_file(path)
    except VipError:
        return "it holds no symptoms vip can read"
    return None
