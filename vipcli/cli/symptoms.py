"""`vip symptoms ...`: shipped symptom packs, and new ones from an LLM (the Visual Symptom Generator)."""

from __future__ import annotations

import contextlib
import json
import re
import textwrap
from pathlib import Path
from typing import Optional

import typer

from vipcli import console
from vipcli.cli import completion, options as opt
from vipcli.cli.help import App
from vipcli.cli.symptoms_rank import rank_command
from vipcli.errors import UsageError, VipError

app = App(
    help="Visual symptom packs: list, show, generate them with an LLM, and rank them on your images.",
    no_args_is_help=True,
)
app.command("rank")(rank_command)


def _pack_json(pack) -> dict:
    return {**pack.to_dict(), "path": pack.path}


def summarize_source(source: dict) -> str:
    """A short provenance line: "paper: Fang et al., MICCAI 2024", "llm: gpt-4o @ host", "manual"."""
    kind = str(source.get("kind", "unknown"))
    if kind == "paper" and source.get("citation"):
        citation = str(source["citation"])
        venue = re.search(r"\b[A-Z][A-Za-z]* \d{4}\b", citation)
        return f"paper: {citation.split(',')[0]}" + (f", {venue.group(0)}" if venue else "")
    if kind == "llm":
        host = source.get("endpoint_host")
        return f"llm: {source.get('model', '?')}" + (f" @ {host}" if host else "")
    return kind


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """List the symptom packs shipped with vip."""
    from rich.text import Text

    from vipcli.packs import shipped_packs

    packs = shipped_packs()
    if as_json:
        print(json.dumps([_pack_json(p) for p in packs], indent=2))
        return
    out = console.stdout()
    table = _packs_table(packs, out.width)
    if out.measure(table, options=out.options.update_width(10_000)).maximum <= out.width:
        out.print(table)
    else:  # too narrow for a line per pack with its name whole: a block per pack, the rest folded under it
        for pack in packs:
            out.print(Text(pack.name, no_wrap=True, overflow="ignore"))
            out.print(Text(textwrap.fill(_pack_details(pack), max(out.width, 20), initial_indent="  ",
                                         subsequent_indent="  ", break_on_hyphens=False)))
    out.print("full text of a pack: vip symptoms show NAME")


def _source_kind(pack) -> str:
    """The pack's source in a word: "paper", "llm", "manual"."""
    kind = str(pack.source.get("kind", "")) if isinstance(pack.source, dict) else ""
    return kind or summarize_source(pack.source)


def _pack_details(pack) -> str:
    """What `vip symptoms list` shows under a pack's name where no table fits: count, source, modality, aliases."""
    details = f"{console.counted(len(pack.symptoms), 'symptom')}, {_source_kind(pack)}, {pack.modality}"
    return details + (f"; aliases: {', '.join(pack.aliases)}" if pack.aliases else "")


def _packs_table(packs: list, width: int):
    """`vip symptoms list`'s table, a line per pack, for a terminal `width` columns wide (80: one line each).

    Long cells are cut with an ellipsis here (rich would rather drop short columns); `vip symptoms show NAME`
    has the full text. The name is never cut: it is what `show` and `--symptoms` take, so the aliases give up
    the width it needs, and where even then the table is wider than the terminal the caller lists the packs
    another way."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    def cut(text: str, width: int) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"

    extra = max(0, width - 80)  # a wider terminal shows more of each cell
    name_width = max(26, *(len(p.name) for p in packs))
    widths = (16 + extra // 4, max(8, 17 - (name_width - 26)) + extra // 4 + extra // 2)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name, justify in (("name", "left"), ("n", "right"), ("source", "left"), ("modality", "left"),
                          ("aliases", "left")):
        table.add_column(name, justify=justify, no_wrap=True)
    for pack in packs:
        cells = (pack.name, str(len(pack.symptoms)), cut(_source_kind(pack), 6), cut(pack.modality, widths[0]),
                 cut(", ".join(pack.aliases), widths[1]))
        table.add_row(*(Text(cell) for cell in cells))
    return table


def names_a_pack_file(name: str) -> bool:
    """True when `name` is a pack file (a .yaml/.yml path, or any existing file), not a shipped pack's name."""
    path = Path(name)
    return path.suffix.lower() in (".yaml", ".yml") or path.is_file()


def find_packs(name: str) -> list:
    """The packs `name` gives: a pack file's one, a symptoms file's ({class: [symptoms]}) or a run
    directory's one per class, or the shipped pack matched by name or alias; UsageError listing the
    names otherwise."""
    from vipcli.checkpoint import refuse_run_in_training
    from vipcli.packs import load_symptom_file, run_yaml, shipped_packs, unknown_pack

    if names_a_pack_file(name) or run_yaml(Path(name)):
        if not Path(name).exists():
            raise VipError(f"symptom pack file not found: {name}",
                           "check the path, or give a shipped pack's name: vip symptoms list")
        return load_symptom_file(Path(name))
    packs = shipped_packs()
    pack = next((p for p in packs if p.matches(name)), None)
    if pack is None and Path(name).is_dir():  # (a class folder named after a shipped pack shows that pack)
        raise VipError(f"{name} is a folder", "give one pack or symptoms file in it")
    if pack is None:
        refuse_run_in_training(Path(name))
        raise unknown_pack(f"no shipped symptom pack named {name!r}", name, packs)
    return [pack]


@app.command("show")
def show_command(
    name: str = typer.Argument(..., metavar="NAME", help="Pack name or alias (e.g. melanoma, bcc), a pack .yaml file, a "
                                         "symptoms file of {class: \\[symptoms]} or a run directory (each class "
                                         "shown as a pack).", autocompletion=completion.packs),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document (a list of packs for a symptoms "
                                                       "file of several classes)."),
) -> None:
    """Show a symptom pack: its symptoms and where they come from (each class of a symptoms file or run)."""
    from vipcli.packs import warn_image_names, warn_named_symptoms, warn_wording

    packs = find_packs(name)
    if names_a_pack_file(name):  # your own packs: checked as train does (a shipped one is checked before it ships)
        others = tuple(pack.name for pack in packs)
        for pack in packs:
            warn_named_symptoms(pack)
            warn_wording(pack, others=tuple(other for other in others if other != pack.name))
            warn_image_names(pack)
    if as_json:
        print(json.dumps(_pack_json(packs[0]) if len(packs) == 1 else [_pack_json(pack) for pack in packs], indent=2))
        return
    out = console.stdout()
    for number, pack in enumerate(packs):
        if number:
            out.print("", markup=False)
        out.print(pack.name + (f"  (aliases: {', '.join(pack.aliases)})" if pack.aliases else ""), markup=False)
        out.print(f"modality: {pack.modality or '-'}", markup=False)
        out.print(f"source:   {_source_line(pack.source)}", markup=False)
        for reference in pack.source.get("references") or []:
            out.print(f"          - {reference}", markup=False)
        out.print("symptoms:", markup=False)
        for index, symptom in enumerate(pack.symptoms, 1):
            out.print(f"  {index}. {symptom}", markup=False)


def _source_line(source: dict) -> str:
    kind = source.get("kind")
    if not kind:
        return "not given (a pack can record it under 'source:', with kind paper, llm or manual)"
    if kind == "paper":
        return f"paper: {source.get('citation', '')}"
    if kind == "llm":
        host, how = source.get("endpoint_host"), source.get("how")
        where = f" at {host}" if host else f" ({how})" if how else ""
        return f"llm: {source.get('model')}{where}, {source.get('date', '')}"
    return f"{kind}: {source.get('note', '')}".rstrip(": ")


@app.command("generate")
def generate_command(
    disease: list[str] = typer.Option([], "--disease", "-d", metavar="<name>", help="Class to describe; repeat for several."),
    data: Optional[Path] = typer.Option(
        None, "--data", help="Data folder: a pack for every class folder that no shipped or --symptoms pack matches."
    ),
    symptoms: list[str] = typer.Option(
        [], "--symptoms", metavar="<source>", help="With --data: packs you already have (file, folder or shipped name). Repeatable."
    ),
    text_only: bool = typer.Option(False, "--text-only", help="With --data: ask the text question only (no images)."),
    modality: Optional[str] = typer.Option(None, "--modality", help='What the images are, e.g. "dermoscopic images".'),
    n: int = typer.Option(4, "--n", help="How many symptoms to keep (the paper keeps 4)."),
    images: list[Path] = typer.Option(
        [],
        "--images",
        metavar="<folder>",
        help="Folder of the class's images (stage 2); one per --disease, or one folder with a subfolder per disease.",
    ),
    model: str = typer.Option("gpt-4o", "--model", help="Model name; with --images it must accept images."),
    base_url: str = typer.Option("https://api.openai.com/v1", "--base-url", help="OpenAI-compatible endpoint root."),
    api_key_env: Optional[str] = typer.Option(
        None, "--api-key-env", show_default="OPENAI_API_KEY",
        help="Name of the environment variable holding the API key (not the key itself; '' sends none). Named "
             "explicitly, its key is sent even over plain http to another machine.",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Pack file (one disease) or folder (several); default ./<disease>.yaml."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing pack files."),
    judge: Optional[str] = typer.Option(
        None, "--judge", help="How stage 1 and 2 are matched: overlap (deterministic) or llm.",
        autocompletion=completion.judges, show_default="overlap"
    ),
    agree_threshold: Optional[float] = typer.Option(
        None, "--agree-threshold", help="Minimum token overlap for two items to agree.", show_default="0.3"
    ),
    timeout: float = typer.Option(120.0, "--timeout", help="Deadline in seconds of each request (connect, wait, "
                                  "read the whole answer)."),
    retries: int = typer.Option(4, "--retries", help="Retries after 429, 5xx or a timeout (exponential backoff)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ask again even if an answer is cached."),
    seed: Optional[int] = opt.seed(None, "Which 16 images form the grid.", show_default="0"),
    backoff: float = typer.Option(1.0, "--backoff", hidden=True, help="First retry wait in seconds."),
) -> None:
    """Ask an LLM for visual symptoms (docs/METHOD.md section 1) and write one pack per disease."""
    from vipcli.symptoms.agree import DEFAULT_THRESHOLD
    from vipcli.symptoms.generate import GenerateConfig, check_config, default_modality
    from vipcli.symptoms.llm import (DEFAULT_KEY_ENV, LLMConfig, check_base_url, check_key_env, check_key_provider,
                                     check_key_transport, check_named_key_is_set)

    check_base_url(base_url)
    check_key_env(api_key_env or "")
    check_number_options(timeout, retries, DEFAULT_THRESHOLD if agree_threshold is None else agree_threshold, backoff)
    check_stage2_options(bool(images) or (data is not None and not text_only), data is not None, judge,
                         agree_threshold, seed)
    judge = judge or "overlap"
    agree_threshold = DEFAULT_THRESHOLD if agree_threshold is None else agree_threshold
    seed = seed or 0
    llm = LLMConfig(
        base_url=base_url,
        model=model,
        api_key_env=DEFAULT_KEY_ENV if api_key_env is None else api_key_env,
        key_over_http=api_key_env is not None,
        timeout_s=timeout,
        retries=retries,
        backoff_s=backoff,
    )
    check_key_transport(llm)
    check_key_provider(llm)
    check_named_key_is_set(llm)
    if data is not None or symptoms or text_only:
        _generate_for_data(data, disease, images, symptoms, text_only, modality, out, force, llm, n, judge,
                           agree_threshold, seed, not no_cache)
        return
    if not disease:
        raise UsageError("say which classes: --disease NAME (repeatable) or --data DIR", "see vip symptoms generate -h")
    check_disease_names(disease)
    folders = resolve_image_folders(disease, images)
    configs = [
        GenerateConfig(
            disease=name.strip(),
            modality=modality or default_modality(name),
            n=n,
            images=folder,
            llm=llm,
            judge=judge,
            threshold=agree_threshold,
            seed=seed,
            use_cache=not no_cache,
            other_classes=tuple(other.strip() for other in disease if other.strip() != name.strip()),
        )
        for name, folder in zip(disease, folders)
    ]
    for config in configs:
        check_config(config)
    paths = resolve_out_paths([c.disease for c in configs], out, force)
    run_generation(configs, paths, force)


def check_disease_names(diseases: list[str]) -> None:
    """UsageError, before any request, for a blank --disease or one given twice (up to case and separators)."""
    from vipcli.packs import normalize_name

    seen: dict[str, str] = {}  # normalized name -> the name as first given
    for name in diseases:
        if not name.strip():
            raise UsageError(f"--disease {name!r}: an empty class name", "name the class, e.g. --disease melanoma")
        key = normalize_name(name)
        if key in seen:
            raise UsageError(f"--disease {name!r} is given twice (as {seen[key]!r})", "give each disease once")
        seen[key] = name


def check_stage2_options(stage2: bool, with_data: bool, judge: Optional[str], agree_threshold: Optional[float],
                         seed: Optional[int]) -> None:
    """UsageError, before any request, for an option of stage 2 (the images) given where it would be ignored without
    a word: --judge, --agree-threshold or --seed where stage 2 does not run (no --images; --data with --text-only),
    or --agree-threshold beside --judge llm (the model decides; no threshold is read)."""
    given = [name for name, value in (("--judge", judge), ("--agree-threshold", agree_threshold), ("--seed", seed))
             if value is not None]
    if given and not stage2:
        named = " and ".join(given)
        raise UsageError(f"{named} {'is' if len(given) == 1 else 'are'} for stage 2 (the images), which runs only "
                         "with --images, or with --data without --text-only",
                         f"{'drop --text-only' if with_data else 'add --images FOLDER'}, or leave out {named}")
    if judge == "llm" and agree_threshold is not None:
        raise UsageError("--agree-threshold is the overlap judge's: with --judge llm the model decides which symptoms "
                         "agree, and no threshold is read", "leave out --agree-threshold, or leave out --judge llm")


def check_number_options(timeout: float, retries: int, agree_threshold: float, backoff: float) -> None:
    """UsageError, before any request, for --timeout, --retries or --agree-threshold that cannot work."""
    import math

    if not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"--timeout {timeout}: must be a positive number of seconds", "e.g. --timeout 120")
    if retries < 0:
        raise UsageError(f"--retries {retries}: must be 0 or more", "e.g. --retries 4")
    if not (math.isfinite(agree_threshold) and 0 <= agree_threshold <= 1):
        raise UsageError(f"--agree-threshold {agree_threshold}: must be between 0 and 1", "e.g. --agree-threshold 0.3")
    if not (math.isfinite(backoff) and backoff >= 0):
        raise UsageError(f"--backoff {backoff}: must be 0 or more seconds", "e.g. --backoff 1")


def _generate_for_data(data, disease, images, symptoms, text_only, modality, out, force, llm, n, judge, threshold,
                       seed, use_cache) -> None:
    """`--data DIR`: check the options that go with it, then generate every missing pack."""
    from vipcli.cli.symptoms_data import generate_for_data
    from vipcli.symptoms.generate import GenerateConfig, check_config

    if data is None:
        raise UsageError("--symptoms and --text-only go with --data DIR", "add --data, or leave them out")
    if disease or images:
        raise UsageError("--data replaces --disease and --images", "give either --data DIR or --disease (and --images)")

    def make_config(name, chosen_modality, folder, files):
        config = GenerateConfig(disease=name, modality=chosen_modality, n=n, images=folder if files else None,
                                image_files=tuple(files), llm=llm, judge=judge, threshold=threshold, seed=seed,
                                use_cache=use_cache)
        check_config(config)
        return config

    generate_for_data(data, out, force, symptoms, modality, text_only, make_config)


def resolve_image_folders(diseases: list[str], images: list[Path]) -> list[Optional[Path]]:
    """One image folder (or None) per disease: paired by order, or subfolders of one folder by name."""
    if not images:
        return [None] * len(diseases)
    if len(images) == len(diseases) and (len(images) > 1 or not _class_subfolder(images[0], diseases[0])):
        return list(images)
    if len(images) == 1:
        return [_class_subfolder(images[0], d) or _missing_subfolder(images[0], d, len(diseases)) for d in diseases]
    raise UsageError(
        f"{len(images)} --images folders for {len(diseases)} --disease names",
        "give one --images per --disease (same order), or one folder with a subfolder per disease",
    )


def _class_subfolder(root: Path, disease: str) -> Optional[Path]:
    from vipcli.packs import normalize_name

    if not root.is_dir():
        return None
    return next(
        (p for p in sorted(root.iterdir()) if p.is_dir() and normalize_name(p.name) == normalize_name(disease)), None
    )


def _missing_subfolder(root: Path, disease: str, count: int) -> Path:
    if count == 1:
        return root
    raise UsageError(
        f"--images {root}: no subfolder for {disease!r}",
        "name subfolders after the diseases, or give one --images per --disease",
    )


def resolve_out_paths(diseases: list[str], out: Optional[Path], force: bool) -> list[Path]:
    """Where each pack goes; refuses (before any LLM call) to overwrite without --force."""
    from vipcli.packs import check_not_a_run_directory
    from vipcli.symptoms.generate import check_pack_file_name, default_out_name, refuse_overwrite

    if out is not None:
        check_not_a_run_directory(out)  # `--symptoms OUT` would read the run's own symptoms, not these packs
    if len(diseases) == 1:
        paths = [out if out is not None and not out.is_dir() else (out or Path(".")) / default_out_name(diseases[0])]
    elif out is not None and (out.is_file() or out.suffix.lower() in (".yaml", ".yml")):
        raise UsageError(
            f"--out {out}: with several --disease, --out must be a folder", "pass a folder, or leave out --out"
        )
    else:
        paths = [(out or Path(".")) / default_out_name(d) for d in diseases]
    if len(set(paths)) < len(paths):
        raise UsageError("two --disease names give the same pack file name", "give each disease once")
    from vipcli.preflight import check_output_file

    for disease, path in zip(diseases, paths):
        named = path == out  # --out FILE, else the disease's name
        other = f"--out {path.with_name(path.name.split('.')[0] + '-pack.yaml')}"
        check_pack_file_name(path.name, f"--out {out}" if named else f"the pack of --disease {disease!r}",
                             f"name the file otherwise, e.g. {other}" if len(paths) == 1 else
                             f"generate it with its own --disease and {other}")
        refuse_overwrite(path, force)
        check_output_file(path)  # a read-only or full --out fails before any LLM call
    return paths


def run_generation(configs: list, paths: list[Path], force: bool) -> None:
    """Generate and write each pack; endpoint failures stop at once, others are reported at the end."""
    from vipcli.symptoms.llm import LLMError
    from vipcli.symptoms.run_memory import one_run

    failed, written, done = [], 0, {}
    with held_packs(paths):  # before the first request: a second run of the same packs fails now
        if len(configs) == 1:
            _generate_one(configs[0], paths[0], force)
            return
        with one_run():  # a model that refused a temperature for one class is asked without one for the next
            for config, path in zip(configs, paths):
                try:
                    _generate_one(config, path, force)
                    written += 1
                    done[config.disease] = path
                except LLMError as error:
                    raise VipError(error.message, error.hint + written_so_far(written)) from None
                except VipError as error:
                    failed.append(config.disease)
                    console.stderr().print(f"error: {error}", markup=False)
    warn_alike_packs(done)
    if failed:
        raise VipError(
            f"{len(failed)} of {len(configs)} packs not written: {', '.join(failed)}",
            "see the messages above" + written_so_far(written, "; the other packs are written and complete"),
        )


def warn_alike_packs(written: dict[str, Path]) -> None:
    """Warn of diseases whose written packs (disease -> file) came out with the same symptoms."""
    from vipcli.packs import classes_alike, load_pack, same_symptoms_warning

    for alike in classes_alike({disease: load_pack(path) for disease, path in written.items()}):
        console.warn(same_symptoms_warning(alike, "ask again for one of them with --force, or edit its pack"))


def written_so_far(written: int, said: str = "; packs written so far are complete") -> str:
    """The end of a hint after packs failed: that those written are complete, said only when one was written."""
    return said if written else ""


@contextlib.contextmanager
def held_packs(paths: list[Path]):
    """Hold each pack file's lock (a hidden `.NAME.lock` beside it, in its folder, made if missing) for the
    block: a second `vip symptoms generate` of the same pack fails at once, before its LLM requests, instead of
    both asking the LLM and the later one's pack replacing the other's (or failing only once it is done)."""
    from vipcli.atomic import made_folder
    from vipcli.locks import output_lock

    with contextlib.ExitStack() as held:
        for path in paths:
            held.enter_context(made_folder(path.parent))
            held.enter_context(output_lock(path, lock=path.parent / f".{path.name}.lock"))
        yield


def _generate_one(config, path: Path, force: bool) -> None:
    from vipcli.symptoms.generate import generate_pack, write_pack

    pack, report = generate_pack(config, notify=console.info)
    write_pack(pack, path, force=force)
    show_report(pack, report, path, config.n, config.other_classes)


def show_report(pack, report, path: Path, n: int, others: tuple[str, ...] = ()) -> None:
    """Print what was removed, kept and dropped, and where the pack went; then warn if the symptoms
    kept are not English or only name a disease (`others`: the other classes generated with it)."""
    from rich.markup import escape

    from vipcli.packs import warn_wording

    for name, stage in (("stage 1 (text)", report.stage1), ("stage 2 (image)", report.stage2)):
        if stage is not None and stage.parsed.removed:
            removed = ", ".join(f"{item!r} ({reason})" for item, reason in stage.parsed.removed)
            answer = f"the {name} answer" if report.stage2 is not None else "the answer"  # two: say which
            console.warn(escape(f"{pack.name}: removed from {answer}: {removed}"))
    out = console.stdout()
    if report.agreement is not None:
        out.print(_agreement_table(pack, report))
        if len(pack.symptoms) < n:
            agree = "symptom agrees" if len(pack.symptoms) == 1 else "symptoms agree"
            console.warn(escape(f"{pack.name}: only {len(pack.symptoms)} {agree} with the images (--n {n})"))
    out.print(console.printable(_written_line(pack, report, path)), markup=False)
    for index, symptom in enumerate(pack.symptoms, 1):
        out.print(f"  {index}. {symptom}", markup=False)
    if report.surplus and report.agreement is None:
        out.print(f"  (not kept, beyond --n {n}: {'; '.join(report.surplus)})", markup=False)
    warn_wording(pack, others=others, label=str(path), generated=True)


def _written_line(pack, report, path: Path) -> str:
    cached = report.stage1.cached and (report.stage2 is None or report.stage2.cached)
    origin = f"{pack.source['model']} at {pack.source['endpoint_host']}"
    return f"wrote {path}: {len(pack.symptoms)} symptoms for {pack.name!r} from {origin}" + (
        " (answers from cache)" if cached else ""
    )


def _agreement_table(pack, report):
    from rich.table import Table
    from rich.text import Text

    table = Table(
        "",
        "stage 1 (text) symptom",
        "best stage 2 (image) match",
        "score",
        title=f"{pack.name}: {report.agreement.method}",
    )
    kept = set(pack.symptoms)
    for match in sorted(
        (*report.agreement.kept, *report.agreement.dropped), key=lambda m: report.stage1.parsed.items.index(m.symptom)
    ):
        status = "kept" if match.symptom in kept else ("beyond --n" if match in report.agreement.kept else "dropped")
        table.add_row(Text(status), Text(match.symptom), Text(match.best or "-"), Text(f"{match.score:.2f}"))
    return table
