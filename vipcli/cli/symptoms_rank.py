"""`vip symptoms rank`: score every symptom on the user's training images; optionally prune the packs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from vipcli import console, shell
from vipcli.cli import options as opt
from vipcli.errors import UsageError


def rank_command(
    data: Path = opt.DATA,
    backbone: str = opt.BACKBONE,
    arch: Optional[str] = opt.ARCH,
    pretrained: Optional[str] = opt.PRETRAINED,
    symptoms: Optional[List[str]] = opt.SYMPTOMS,
    min_auroc: Optional[float] = typer.Option(None, "--min-auroc", help="Flag symptoms at or below this AUROC "
                                              "(default: the 95% chance bound for the image counts)."),
    prune: bool = typer.Option(False, "--prune", help="Write packs without the flagged symptoms (needs --out)."),
    keep: Optional[int] = typer.Option(None, "--keep", metavar="K", help="Write packs with each class's K best "
                                       "symptoms (needs --out; with --prune, at most K of those that help)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the written packs (one .yaml per class; "
                                       "never the packs being ranked)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing pack files in --out."),
    seed: int = opt.seed(1, "Seed of any split vip makes (as `vip train --seed`)."),
    device: str = opt.DEVICE,
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the on-disk feature cache."),
    workers: Optional[int] = opt.WORKERS,
    image_fit: str = opt.image_fit("Rank on the images as `vip train --image-fit` will see them."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Rank each class's symptoms by how well the frozen backbone finds them in the training images."""
    from vipcli.symptoms.rank import RankConfig, prune as prune_packs, rank_on_data

    from vipcli.image_fit import checked_fit

    check_prune_options(prune, out, data, keep)
    writing = prune or keep is not None
    workers, image_fit = opt.worker_count(workers), checked_fit(image_fit)
    config = RankConfig(
        data=data, backbone=backbone, arch=arch, pretrained=pretrained, symptoms=opt.symptom_sources(symptoms), seed=seed,
        min_auroc=min_auroc, device=device, use_cache=not no_cache, workers=workers, image_fit=image_fit,
    )
    from vipcli.packs import check_sources_exist
    from vipcli.settings import check_backbone_and_device

    check_backbone_and_device(backbone, device)  # before planned_pack_paths lists and hashes the data
    check_sources_exist(config.symptoms)
    paths = planned_pack_paths(config, out, force, too_few_matters=prune) if writing else {}
    from vipcli.cache_use import using_cache

    with console.progress_bar() as progress, using_cache(config.use_cache):  # --no-cache: nothing remembered
        result = rank_on_data(config, progress)
    console.warn_skipped(result.failures, config.data)
    pruned = prune_packs(result, data, keep=keep, drop_unhelpful=prune) if writing else []
    written = write_pruned(pruned, paths, force)
    if as_json:
        print(json.dumps(rank_document(result, pruned, written), indent=2))
    else:
        show_ranking(result, pruning=writing, data=data)
        show_pruned(pruned, written, data, train_options(backbone, arch, pretrained, seed, image_fit))
    warn_wrong_way(pruned, written, data)  # last, where it is read


def train_options(backbone: str, arch: Optional[str], pretrained: Optional[str], seed: int,
                  image_fit: str = "crop") -> str:
    """The `vip train` options that train on what was ranked: the backbone, the seed of any split vip made, and
    the image fit."""
    pairs = (("--backbone", backbone if backbone != "clip" else None), ("--arch", arch),
             ("--pretrained", pretrained), ("--seed", seed if seed != 1 else None),
             ("--image-fit", image_fit if image_fit != "crop" else None))
    return "".join(f" {flag} {shell.quote(value)}" for flag, value in pairs if value is not None)


def check_prune_options(prune: bool, out: Optional[Path], data: Path, keep: Optional[int] = None) -> None:
    """UsageError unless --prune or --keep comes with --out, --keep is at least 1, and --out is a folder outside
    `data`'s class folders (there the next `vip train --data` would read it as a class without images)."""
    from vipcli.symptoms.rank import check_keep

    check_keep(keep)
    if prune and out is None:
        raise UsageError("--prune needs --out", "give a folder for the pruned packs, e.g. --out packs/")
    if keep is not None and out is None:
        raise UsageError("--keep needs --out", f"give a folder for the packs of the {keep} best symptoms, e.g. "
                         "--out packs/")
    if out is not None and not prune and keep is None:
        raise UsageError("--out is only used with --prune or --keep", "add --prune or --keep K, or leave out --out")
    if out is not None and (out.is_file() or out.suffix.lower() in (".yaml", ".yml")):
        raise UsageError(f"--out {out}: must be a folder", "pass a folder; each class gets its own pack file")
    if out is not None:
        from vipcli.packs import check_not_a_run_directory
        from vipcli.preflight import check_output_folder, check_outside_data

        check_outside_data(out, data)
        check_not_a_run_directory(out)  # `--symptoms OUT` would read the run's own symptoms, not the pruned packs
        check_output_folder(out)  # writable and not full, before any image is encoded


def planned_pack_paths(config, out: Path, force: bool, too_few_matters: bool = True) -> dict[str, Path]:
    """Class name -> pack file in `out`; refuses to overwrite (a pack being ranked even with --force), and, when
    `too_few_matters` (--prune), classes too few to prune by (before any image is encoded)."""
    from vipcli.data import load_dataset
    from vipcli.packs import packs_for_classes
    from vipcli.symptoms.generate import check_pack_file_name, default_out_name, refuse_overwrite
    from vipcli.symptoms.rank import too_few_error, too_few_to_judge

    dataset = load_dataset(config.data, seed=config.seed)
    packs = packs_for_classes(dataset.class_names, list(config.symptoms), warn=False, data=config.data)  # rank_on_data warns
    paths = {name: out / default_out_name(pack.name) for name, pack in packs.items()}
    seen: dict[Path, str] = {}
    for name, path in paths.items():
        check_pack_file_name(path.name, f"the pruned pack {packs[name].name!r}", "rename the pack (its 'name:') "
                             "or give the class a pack of another name with --symptoms")
        other = seen.setdefault(path, name)
        if other != name:
            raise UsageError(
                f"classes {other!r} and {name!r} both use the pack {packs[name].name!r}",
                "give each class its own pack with --symptoms before pruning",
            )
        refuse_input_pack(path, packs)
        refuse_overwrite(path, force)
    labels = [sample.label for sample in dataset.splits["train"]]
    too_few = too_few_to_judge(dataset.class_names, [labels.count(i) for i in range(len(dataset.class_names))])
    if too_few and too_few_matters and config.min_auroc is None:  # before any image is encoded (prune checks the
        # readable ones; --keep alone ranks and judges nothing, so it is not refused)
        raise too_few_error(too_few)
    return paths


def refuse_input_pack(path: Path, packs: dict) -> None:
    """UsageError when `path` is the file of a pack being ranked: the packs written from a ranking never replace
    the packs it ranked, not even with --force (the ranking and their provenance would describe a pack that is
    gone)."""
    if not path.exists():
        return
    for pack in packs.values():
        source = Path(pack.path) if pack.path else None
        if source is not None and source.exists() and source.samefile(path):
            read_as = "" if str(source) == str(path) else f" (read as {source})"
            raise UsageError(f"--out {path.parent}: {path} is a pack being ranked{read_as}, and writing there would "
                             "replace it", "choose another --out; the packs you rank are never overwritten")


def write_pruned(pruned: list, paths: dict[str, Path], force: bool) -> dict[str, Path]:
    """Write each class's pruned pack (each file atomically, paths from `planned_pack_paths`)."""
    from vipcli.symptoms.generate import write_pack

    return {item.class_name: write_pack(item.pack, paths[item.class_name], force=force) for item in pruned}


def warn_wrong_way(pruned: list, written: dict[str, Path], data: Path) -> None:
    """One warning per class whose pruned pack kept symptoms that point the wrong way (kept only so the
    class has two), naming them, their scores, and how to get better ones."""
    for item in pruned:
        wrong = item.kept_wrong_way
        if not wrong:
            continue
        listed = "; ".join(f"{s.symptom!r} (AUROC {s.auroc:.3f}" + (f", favours {s.favours})" if s.favours else ")")
                           for s in wrong)
        path = written[item.class_name]
        console.warn(escape(
            f"{item.class_name}: {len(wrong)} kept symptom{'s point' if len(wrong) > 1 else ' points'} the wrong way (the "
            f"other classes' images match {'them' if len(wrong) > 1 else 'it'} better), kept only so the class has "
            f"{len(item.pack.symptoms)}: {listed}; write better symptoms for {item.class_name!r} in {path}, or "
            f"regenerate them from its images: {regenerate_command(item.pack, item.class_name, data, path)}"))


def regenerate_command(pack, class_name: str, data: Path, path: Path) -> str:
    """The `vip symptoms generate` command that writes a new pack for one class from its training images."""
    folder = data / "train" / class_name if (data / "train" / class_name).is_dir() else data / class_name
    modality = pack.modality or "WHAT THE IMAGES ARE"
    return shell.command("vip", "symptoms", "generate", "--disease", pack.name, "--modality", modality, "--images",
                         folder, "--out", path, "--force")


def show_ranking(result, pruning: bool = False, data: Optional[Path] = None) -> None:
    """The table of symptoms by class, best first, a line on the flagged ones and what to do about them
    (`pruning`: --prune or --keep was given, and its own lines say what was written; `data`: the ranked folder,
    named in the next step)."""
    from rich.table import Table
    from rich.text import Text

    from vipcli.symptoms.rank import INTERVAL_NAME, RULE, UNRELATED_TEXTS

    out = console.stdout()
    counts = ", ".join(f"{name}: {n}" for name, n in zip(result.class_names, result.counts))
    out.print(
        f"{len(result.scores)} symptoms of {len(result.class_names)} classes on {sum(result.counts)} training images "
        f"({counts}); backbone {result.backbone['id']} on {result.device}",
        markup=False,
    )
    full_width = full_table_width(result)
    if out.width >= full_width:
        table = Table("class", "symptom", "AUROC", INTERVAL_NAME, "bound", "unrelated", "Holm p", "verdict")
        for column in table.columns:  # only the symptom and the verdict wrap
            column.no_wrap = column.header not in ("symptom", "verdict")
        for score in result.scores:
            table.add_row(Text(score.class_name), Text(score.symptom), f"{score.auroc:.3f}", interval_text(score),
                          f"{score.bound:.3f}", unrelated_text(score), p_text(score.p_holm), verdict_cell(score))
        out.print(table)
    else:  # its rows would wrap, the numbers too (a 10-line row at 80 columns): one line per symptom instead
        show_narrow_table(out, result, full_width)
    out.print(f"AUROC: its class against the others, on its similarity to each image (minus the image's mean over "
              f"all symptoms); {INTERVAL_NAME}: where that AUROC lies for these image counts; bound: what a useless "
              "symptom stays under (95%), or --min-auroc; unrelated: how far from chance, either way, "
              f"{len(UNRELATED_TEXTS)} texts that say nothing of the images ({UNRELATED_TEXTS[0]!r}, ...) reach for "
              "its class, and its 95% interval (bootstrap over the images), which a symptom the backbone sees must "
              "beat with the low end of its interval; Holm p: the larger p of its tests against chance and against "
              f"the unrelated texts, after Holm's correction across its class's symptoms; {RULE}", markup=False)
    flagged = [s for s in result.scores if not s.helps]
    if not flagged:
        out.print("every symptom helps", markup=False)
        if not pruning:
            console.info("next: nothing to prune; train with these packs, or check them with vip benchmark")
        return
    out.print(f"{len(flagged)} of {len(result.scores)} symptoms do not help:", markup=False)
    for score in flagged:
        out.print(f"  {score.class_name}: {score.symptom!r} ({score.verdict_text}, AUROC {score.auroc:.3f}, "
                  f"{INTERVAL_NAME} {interval_text(score)}{correction_text(result, score)})", markup=False)
    show_next_steps(result, flagged, pruning, data)


FULL_TABLE_TEXT_MIN = 20  # the least width the full table gives each of the symptom and verdict columns (wrapped)


def full_table_width(result) -> int:
    """The terminal columns the full table needs: its class and number columns on one line each, and
    FULL_TABLE_TEXT_MIN for each of the symptom and the verdict; a narrower terminal gets `show_narrow_table`."""
    from vipcli.symptoms.rank import INTERVAL_NAME

    columns = [["class", *(s.class_name for s in result.scores)], ["AUROC"], [INTERVAL_NAME, *map(interval_text,
               result.scores)], ["bound"], ["unrelated", *map(unrelated_text, result.scores)],
               ["Holm p", *(p_text(s.p_holm) for s in result.scores)]]
    widths = [max(len(text) for text in column) for column in columns]
    rules_and_padding = 9 + 8 * 2  # 8 columns: 9 rules, 2 spaces of padding each
    return sum(widths) + rules_and_padding + 2 * FULL_TABLE_TEXT_MIN


def verdict_cell(score):
    """A symptom's verdict as the table shows it: green when it helps, bold red otherwise."""
    from rich.text import Text

    return Text(score.verdict_text, style="green" if score.helps else "bold red")


NARROW_SYMPTOM_MIN = 12  # the symptom column's least width in the narrow table (a longer text ends in "…")


def show_narrow_table(out, result, full_width: int) -> None:
    """The ranking for a terminal too narrow for the full table: one line per symptom (symptom, AUROC, verdict;
    a long symptom ends in an ellipsis), under a line per class; then each class's bound and unrelated texts'
    reach (the same for all its symptoms), and what the table leaves out and where it is (`full_width`: the
    columns the full table needs)."""
    from rich.table import Table
    from rich.text import Text

    from vipcli.symptoms.rank import INTERVAL_NAME

    verdict_width = max([len("verdict"), *(len(score.verdict_text) for score in result.scores)])
    overhead = 4 + 3 * 2  # 3 columns: 4 rules, 2 spaces of padding each
    symptom_width = max(NARROW_SYMPTOM_MIN, out.width - overhead - len("AUROC") - verdict_width)
    table = Table()
    table.add_column("symptom", no_wrap=True, overflow="ellipsis", max_width=symptom_width)
    table.add_column("AUROC", no_wrap=True)
    table.add_column("verdict", no_wrap=True, overflow="ellipsis")
    for position, score in enumerate(result.scores):
        if position == 0 or result.scores[position - 1].class_name != score.class_name:
            table.add_row(Text(score.class_name, style="bold"), "", "")
        table.add_row(Text("  " + score.symptom), f"{score.auroc:.3f}", verdict_cell(score))
    out.print(table)
    for name in dict.fromkeys(score.class_name for score in result.scores):
        first = next(score for score in result.scores if score.class_name == name)
        out.print(f"{name}: bound {first.bound:.3f}, unrelated {unrelated_text(first)}", markup=False)
    out.print(f"(this width leaves out each symptom's {INTERVAL_NAME} and Holm p: a terminal of {full_width} columns "
              "shows them, and so does --json)", markup=False)


def interval_text(score) -> str:
    """A symptom's AUROC interval as the table shows it: "0.668-0.804"."""
    return "-" if score.interval is None else f"{score.interval[0]:.3f}-{score.interval[1]:.3f}"


def unrelated_text(score) -> str:
    """The unrelated texts' reach for a symptom's class, with its 95% interval where measured: "0.682
    (0.619-0.752)"."""
    if score.unrelated_interval is None:
        return f"{score.unrelated:.3f}"
    low, high = score.unrelated_interval
    return f"{score.unrelated:.3f} ({low:.3f}-{high:.3f})"


def p_text(p_value) -> str:
    """A p value as the table shows it: "0.015", "<0.001", or "-" when not tested."""
    if p_value is None:
        return "-"
    return "<0.001" if p_value < 0.001 else f"{p_value:.3f}"


def correction_text(result, score) -> str:
    """Why a flagged symptom's Holm p or "favours" does not read as its verdict does, "" when nothing needs saying:
    it helps on its own but not after Holm's correction (", p 0.037, 0.148 after Holm's correction for nevus's 4
    symptoms"); it favours another class on its own but not after the correction; or its Holm p is under 0.05 but
    an earlier test of the rule (`RULE`) failed (", Holm p 0.012 under 0.05, but the low end of its 95% interval,
    0.640, is not above the unrelated texts' reach, 0.655")."""
    from vipcli.symptoms.rank import FAMILY_ALPHA, INTERVAL_NAME

    family = sum(1 for other in result.scores if other.class_name == score.class_name)
    if score.lost_to_correction:
        return (f", p {p_text(score.p_value)}, {p_text(score.p_holm)} after Holm's correction for "
                f"{score.class_name}'s {family} symptoms")
    text = ""
    if score.favours_lost_to_correction:
        others = sum(1 for name, count in zip(result.class_names, result.counts) if count and name != score.class_name)
        text = (f", favours {score.favours_before_correction} on its own (p {p_text(score.favours_p)}), not after "
                f"Holm's correction for {score.class_name}'s {family * others} pairwise tests "
                f"({p_text(score.favours_p_holm)})")
    failed = score.failed_tests
    if failed and failed[0] != "correction" and score.p_holm is not None and score.p_holm < FAMILY_ALPHA:
        if failed[0] == "favours":
            why = f"{score.favours}'s images match it better than {score.class_name}'s (AUROC {score.favours_auroc:.3f})"
        elif failed[0] == "chance":
            why = f"its AUROC does not beat the bound, {score.bound:.3f}"
        else:
            floor = max(0.5, score.unrelated)
            reach = "chance" if floor == 0.5 else "the unrelated texts' reach"
            why = f"the low end of its {INTERVAL_NAME}, {score.low:.3f}, is not above {reach}, {floor:.3f}"
        text += f", Holm p {p_text(score.p_holm)} under 0.05, but {why}"
    return text


def show_next_steps(result, flagged: list, pruning: bool, data: Optional[Path] = None) -> None:
    """A warning for each class with too few images for any verdict, then (without --prune or --keep) the next
    step that fits the ranking (`next_step`)."""
    from vipcli.symptoms.rank import ENOUGH_HINT, too_few_to_judge

    undecided = {score.class_name for score in flagged if score.too_few_images}
    for name, counts in too_few_to_judge(result.class_names, result.counts).items():
        if name in undecided:
            console.warn(escape(f"{name}: {counts} training images (its own against the other classes') are too few "
                                "for any AUROC, not even 1.0, to beat chance with 95% confidence: its verdicts say "
                                f"nothing (add training images: {ENOUGH_HINT})"))
    if not pruning and any(not score.too_few_images for score in flagged):  # some verdict says something
        console.info(escape(next_step(result, data)))


def next_step(result, data: Optional[Path] = None) -> str:
    """What to do after a ranking where some symptom does not help: with none helping anywhere, other symptoms
    (pruning would only keep noise); with a class short of KEEP_AT_LEAST that help, --prune and better symptoms
    for that class; otherwise --prune, or --keep K for a fixed number."""
    from vipcli.symptoms.rank import KEEP_AT_LEAST

    helping = {name: sum(1 for s in result.scores if s.class_name == name and s.helps) for name in result.class_names}
    judged = {s.class_name for s in result.scores if not s.too_few_images}
    short = [name for name in result.class_names if name in judged and helping[name] < KEEP_AT_LEAST]
    check = "; check the result with vip benchmark"
    if not any(helping.values()):
        return ("next: no symptom helps on these images, so pruning would keep noise: write other symptoms, or "
                f"generate them from the images ({generate_hint(data, result.class_names[0])}), add training "
                "images, or rank with another backbone; --keep K --out DIR writes each class's K best anyway")
    if short:
        listed = ", ".join(f"{name} {helping[name] or 'none'}" for name in short)
        names = " and ".join(short)
        return (f"next: add --prune --out DIR to write packs without them (symptoms that help: {listed}; each class "
                f"keeps its best to have {KEEP_AT_LEAST}); write other symptoms for {names}, or generate them from "
                f"the images ({generate_hint(data, short[0])}){check}")
    return (f"next: add --prune --out DIR to write packs of only the symptoms that help (each class has at least "
            f"{min(helping.values())}), or --keep K --out DIR for each class's K best{check}")


def generate_hint(data: Optional[Path], class_name: str) -> str:
    """`vip symptoms generate --images` on one class folder of `data` (a placeholder when `data` is not known)."""
    if data is None:
        return "vip symptoms generate --images DATA/CLASS ..."
    folder = data / "train" / class_name if (data / "train" / class_name).is_dir() else data / class_name
    return f"vip symptoms generate --images {shell.quote(folder)} ..."


def show_pruned(pruned: list, written: dict[str, Path], data: Path, backbone_options: str = "") -> None:
    """One line per written pack: how many symptoms it kept and which it lost, then the train command."""
    out = console.stdout()
    for item in pruned:
        total = len(item.pack.symptoms) + len(item.removed)
        line = f"wrote {written[item.class_name]}: {len(item.pack.symptoms)} of {total} symptoms for {item.class_name!r}"
        unhelpful = [s for s in item.removed if s not in item.beyond_keep]
        if unhelpful:
            line += f" (removed: {'; '.join(s.symptom for s in unhelpful)})"
        if item.beyond_keep:
            dropped = "; ".join(f"{s.symptom} ({s.verdict_text}, AUROC {s.auroc:.3f})" for s in item.beyond_keep)
            line += f" (dropped, beyond the {len(item.pack.symptoms)} best: {dropped})"
        if item.kept_anyway:
            line += f" (kept to have {len(item.pack.symptoms)}: {'; '.join(s.symptom for s in item.kept_anyway)})"
        out.print(line, markup=False)
    if written:
        folder = next(iter(written.values())).parent
        command = f"vip train --data {shell.quote(data)}{backbone_options} --symptoms {shell.quote(folder)}"
        console.info(f"train with them: {command}")  # a hint: stderr, as every hint


def rank_document(result, pruned: list, written: dict[str, Path]) -> dict:
    """The ranking (and any written packs) as one JSON-ready document."""
    from vipcli.symptoms.rank import (BOOTSTRAP_SEED, CORRECTION, INTERVAL_NAME, RULE, UNRELATED_TEXTS,
                                      bootstrap_resamples)

    resamples = bootstrap_resamples([score.class_name for score in result.scores])
    return {
        "class_names": result.class_names,
        "training_images": dict(zip(result.class_names, result.counts)),
        "split": result.split,
        "backbone": result.backbone,
        "image_fit": result.image_fit,
        "device": result.device,
        "unreadable": {str(k): v for k, v in result.failures.items()},  # as in train and benchmark --json
        "skipped": {str(k): v for k, v in result.failures.items()},  # its older name
        "unrelated_texts": list(UNRELATED_TEXTS),
        "interval": f"{INTERVAL_NAME} of each AUROC from the image counts (Newcombe's score interval)",
        "unrelated_interval": f"{INTERVAL_NAME} of each class's unrelated reach: {resamples} class-stratified "
                              f"bootstrap resamples of the images, seed {BOOTSTRAP_SEED}",
        "correction": CORRECTION,
        "rule": RULE,
        "symptoms": [
            {"class": s.class_name, "symptom": s.symptom, "auroc": round(s.auroc, 4),
             "auroc_interval": None if s.interval is None else [round(v, 4) for v in s.interval],
             "bound": round(s.bound, 4),
             "unrelated_auroc": round(s.unrelated, 4),
             "unrelated_interval": None if s.unrelated_interval is None else [round(v, 4) for v in s.unrelated_interval],
             "p": _rounded(s.p_value), "p_holm": _rounded(s.p_holm),
             "helps": s.helps, "helps_before_correction": s.passes_before_correction, "verdict": s.verdict,
             "verdict_text": s.verdict_text, "failed": list(s.failed_tests), "favours": s.favours,
             "favours_auroc": None if s.favours_auroc is None else round(s.favours_auroc, 4),
             "favours_before_correction": s.favours_before_correction, "favours_p": _rounded(s.favours_p),
             "favours_p_holm": _rounded(s.favours_p_holm)}
            for s in result.scores
        ],
        "pruned": [
            {"class": p.class_name, "path": str(written[p.class_name]), "symptoms": list(p.pack.symptoms),
             "removed": [s.symptom for s in p.removed], "kept_below_bound": [s.symptom for s in p.kept_anyway],
             "kept_wrong_way": [s.symptom for s in p.kept_wrong_way],
             "beyond_keep": [s.symptom for s in p.beyond_keep]}
            for p in pruned
        ],
    }


def _rounded(value, digits: int = 4):
    """`value` rounded for --json, None kept."""
    return None if value is None else round(value, digits)
