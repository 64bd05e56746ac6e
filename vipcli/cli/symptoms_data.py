"""`vip symptoms generate --data DIR`: a pack for every class folder that has none, and a closing table."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

from vipcli import console, shell
from vipcli.errors import UsageError, VipError
from vipcli.symptoms.folder import GENERATE, GIVEN, IN_OUT, SHIPPED


def generate_for_data(data: Path, out: Optional[Path], force: bool, sources: list[str], modality: Optional[str],
                      text_only: bool, make_config) -> None:
    """Plan, generate the missing packs, and print where every class's pack comes from.

    Args:
        data: the data folder (class subfolders, optionally under train/ val/ test/).
        out: folder for generated packs (default: the current folder).
        force: regenerate packs already in `out`, overwriting them.
        sources: --symptoms values; they win over shipped packs.
        modality: --modality, or None to take the other classes' packs' modality.
        text_only: skip stage 2 (no images shown).
        make_config: (disease, modality, image folder, image files) -> GenerateConfig with the other options.

    Raises:
        VipError: a class's pack could not be generated (the others are written and complete).
    """
    from vipcli.data import load_dataset
    from vipcli.preflight import check_output_folder, check_outside_data
    from vipcli.symptoms.folder import check_enough_images, check_out_paths, modality_for, plan_packs
    from vipcli.symptoms.run_memory import one_run

    if out is not None:  # a pack folder among the class folders is read as a class without images
        check_outside_data(out, data)
    out = check_out_folder(out)
    dataset = load_dataset(data)
    plans = plan_packs(dataset, sources, out, force)
    todo = [p for p in plans if p.origin == GENERATE]
    configs = {}
    if todo:
        check_out_paths(plans)
        check_output_folder(out)  # a read-only or full --out (or current folder) fails before any LLM call
        if not text_only:
            check_enough_images(plans)
        chosen = modality_for(plans, modality)
        if not modality:
            console.info(f"modality: {chosen} (from the packs of the other classes; --modality to change it)")
        configs = {  # each class's answers lose the items that name another class of the data set
            p.class_name: replace(make_config(p.disease, chosen, p.folder, () if text_only else p.train_images),
                                  other_classes=tuple(q.disease for q in plans if q is not p))
            for p in todo
        }
    with one_run():  # a model that refused a temperature for one class is asked without one for the next
        rows, failure = _generate_missing(plans, configs, force)
    show_table(plans, rows)
    if failure is None and any(p.origin != SHIPPED for p in plans):  # (not while a class has no pack)
        command = shell.command("vip", "train", "--data", data, *_symptom_options(plans, sources, out))
        console.info(f"train with them: {command}")  # a hint: stderr
    if failure is not None:
        raise failure


def check_out_folder(out: Optional[Path]) -> Path:
    """--out as a folder (default "."); UsageError for a file or a .yaml name, VipError for a run directory."""
    from vipcli.packs import check_not_a_run_directory

    if out is None:
        return Path(".")
    if out.is_file() or out.suffix.lower() in (".yaml", ".yml"):
        raise UsageError(f"--out {out}: with --data, --out must be a folder", "pass a folder, or leave out --out")
    check_not_a_run_directory(out)  # `--symptoms OUT`, the hint at the end, would read the run's own symptoms
    return out


def _generate_missing(plans, configs: dict, force: bool) -> tuple[dict, Optional[VipError]]:
    """Generate each missing pack; returns (class -> (pack, origin) table cells, the error to raise)."""
    from vipcli.cli.symptoms import written_so_far
    from vipcli.symptoms.llm import LLMError

    rows, failed, stopped, written = {}, [], None, 0
    for plan in plans:
        if plan.class_name not in configs:
            rows[plan.class_name] = _found_row(plan)
            continue
        if stopped is not None:
            rows[plan.class_name] = ("-", "not asked: stopped at the endpoint error above")
            continue
        try:
            rows[plan.class_name] = _generate_one(configs[plan.class_name], plan, force)
            written += 1
        except LLMError as error:
            stopped = VipError(error.message, error.hint + written_so_far(written))
            rows[plan.class_name] = ("-", f"failed: {error.message}")
        except VipError as error:
            failed.append(plan.class_name)
            console.stderr().print(f"error: {error}", markup=False)
            rows[plan.class_name] = ("-", f"failed: {error.message}")
    if stopped is None and failed:
        stopped = VipError(
            f"{len(failed)} of {len(configs)} packs not written: {', '.join(failed)}",
            "see the messages above" + written_so_far(written, "; the other packs are written and complete"),
        )
    return rows, stopped


def _generate_one(config, plan, force: bool) -> tuple[str, str]:
    from vipcli.cli.symptoms import show_report
    from vipcli.symptoms.generate import generate_pack, write_pack

    pack, report = generate_pack(config, notify=console.info)
    write_pack(pack, plan.path, force=force)
    show_report(pack, report, plan.path, config.n, config.other_classes)
    origin = f"generated: {pack.source['model']} at {pack.source['endpoint_host']}"
    if report.stage2 is not None:
        origin += f", stage 2 on {len(report.grid_files)} of {len(config.image_files)} training images"
    else:
        origin += ", text question only"
    cached = report.stage1.cached and (report.stage2 is None or report.stage2.cached)
    return str(plan.path), origin + (" (answers from cache)" if cached else "")


def _found_row(plan) -> tuple[str, str]:
    from vipcli.cli.symptoms import summarize_source

    if plan.origin == SHIPPED:
        return plan.pack.name, f"shipped ({summarize_source(plan.pack.source)})"
    if plan.origin == GIVEN:
        return plan.pack.path, f"given with --symptoms ({summarize_source(plan.pack.source)})"
    return plan.pack.path, f"already in --out ({summarize_source(plan.pack.source)}); --force makes a new one"


def show_table(plans, rows: dict) -> None:
    """Per class: the pack used and where it came from."""
    from rich.table import Table
    from rich.text import Text

    table = Table("class", "pack", "where it came from", title="symptom packs for every class")
    for plan in plans:
        pack, origin = rows[plan.class_name]
        table.add_row(Text(plan.class_name), Text(str(pack)), Text(origin))
    console.stdout().print(table)


def _symptom_options(plans, sources: list[str], out: Path) -> list[str]:
    """The words of the `--symptoms` options that train with the packs found and written."""
    options = [word for source in sources for word in ("--symptoms", source)]
    if any(p.origin in (GENERATE, IN_OUT) for p in plans):
        options += ["--symptoms", str(out)]
    return options
