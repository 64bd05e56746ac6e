"""Options shared by several commands, declared once (so their help never drifts apart), and
the parsers that turn them into the settings dataclasses of `vipcli.settings`."""

from __future__ import annotations

from typing import List, Optional

import typer

from vipcli.cli import completion
from vipcli.errors import UsageError

# --- data and symptoms ---------------------------------------------------------------------------
DATA = typer.Option(..., "--data", help="Folder of class subfolders (optionally under train/ val/ test/).")
SYMPTOMS = typer.Option(None, "--symptoms", metavar="<source>", help="Pack file, {class: \\[symptoms]} YAML file, folder of packs, "
                        "shipped pack name, or run directory (the symptoms it trained on). Repeatable.")

# --- the backbone ------------------------------------------------------------------------------
BACKBONE = typer.Option("clip", "--backbone", help="Backbone plugin id (see `vip backbones list`).",
                        autocompletion=completion.backbones)
ARCH = typer.Option(None, "--arch", help="Architecture: open_clip name, model-config JSON, hf-hub: id; for hf-clip "
                    "and siglip a hub id, save_pretrained folder or config.json (config and tokenizer).")
PRETRAINED = typer.Option(None, "--pretrained", help="Weights: tag, local file, hf-hub: id, or none (random); for "
                          "hf-clip and siglip a hub id or save_pretrained folder.")


def device(default: str = "auto", note: str = ""):
    """A `--device` option of `default`, its help the names every command takes (and ` (note)`)."""
    return typer.Option(default, "--device", help=f"auto, cpu, cuda, cuda:N or mps{f' ({note})' if note else ''}.",
                        autocompletion=completion.devices)


DEVICE = device()

# --- encoding ----------------------------------------------------------------------------------
VIEWS = typer.Option(8, "--views", help="Augmented views encoded and cached per training image.")
WORKERS = typer.Option(None, "--workers", help="Image-decoding worker processes (default: one per usable core, "
                       "at most 16, under torchrun each process's share less one, at least 1; 0 decodes in the main process; "
                       "never more than the usable cores).")
ENCODE_BATCH = typer.Option(64, "--encode-batch", help="Image views per image-encoder call (an image's --views are "
                            "split to fit); lower it if the GPU runs out of memory while encoding (features may "
                            "differ in their last digits by batch size).")
NO_CACHE = typer.Option(False, "--no-cache", help="Do not read or write the on-disk feature cache.")


def image_fit(note: str):
    """An `--image-fit` option (default crop), its help the three fits and then `note`."""
    return typer.Option("crop", "--image-fit", help="How a non-square image fits the encoder's square: crop (the "
                        "backbone's own: CLIP-style ones keep the centre square, cutting the long side's ends), pad "
                        f"(centred on black: nothing cut) or squash (resized: nothing cut, aspect changed). {note}",
                        autocompletion=completion.image_fits)


IMAGE_FIT = image_fit("Recorded in the run; predict uses it.")
BENCHMARK_IMAGE_FIT = image_fit("Recorded in results.json; resuming the sweep with another fit is refused.")

# --- the schedule of the shared prompt-training loop ----------------------------------------------
SCHEDULE = typer.Option("auto", "--schedule", help="auto (fewshot with --shots N, paper with all), fewshot "
                        "(batch 4, 100 epochs) or paper (batch 32, 50 epochs).", autocompletion=completion.schedules)
EPOCHS = typer.Option(None, "--epochs", help="Override the schedule's epochs.")
BATCH_SIZE = typer.Option(None, "--batch-size", help="Override the schedule's batch size.")
LR = typer.Option(None, "--lr", help="Override the schedule's learning rate.")

# --- seeds ----------------------------------------------------------------------------------------
SEED_MIN, SEED_MAX = 0, 2**32 - 1  # what every seeded library takes (numpy and scikit-learn: 32 bits, not negative)


def seed(default: Optional[int], help: str, name: str = "--seed", show_default=True):
    """A seed option (`--seed`, or `name`) of `default`, refused by typer (exit code 2) outside
    SEED_MIN..SEED_MAX (`show_default`: the default the help shows, for a None that stands for one)."""
    def in_range(value: Optional[int]) -> Optional[int]:
        try:
            return value if value is None else checked_seed(value)
        except SeedOutOfRange as error:
            raise typer.BadParameter(str(error)) from None

    return typer.Option(default, name, callback=in_range, help=help, show_default=show_default)


def seed_value(text: str) -> int:
    """One seed of a list option as an int; ValueError if not a number, `SeedOutOfRange` outside the range."""
    return checked_seed(int(text))


def checked_seed(value: int) -> int:
    """`value`, or `SeedOutOfRange` (a ValueError) outside SEED_MIN..SEED_MAX."""
    if not SEED_MIN <= value <= SEED_MAX:
        raise SeedOutOfRange(f"{value} is outside {SEED_MIN}..{SEED_MAX}")
    return value


class SeedOutOfRange(ValueError):
    """A seed that a seeded library would refuse."""


MOST_SEEDS_IN_A_RANGE = 1000  # '--seeds 1-10000' is a typo sooner than a sweep


def seed_range(item: str) -> list[str]:
    """One item of a seeds list as the seeds it names: '4' -> ['4'], the inclusive range '1-3' -> ['1', '2', '3'];
    a range that runs backwards, or of more than MOST_SEEDS_IN_A_RANGE seeds, is a SeedOutOfRange."""
    first, dash, last = item.partition("-")
    if not dash or not first.strip().isdigit() or not last.strip().isdigit():
        return [item]
    first_seed, last_seed = checked_seed(int(first)), checked_seed(int(last))
    if last_seed < first_seed:
        raise SeedOutOfRange(f"the range {item} runs backwards")
    if last_seed - first_seed >= MOST_SEEDS_IN_A_RANGE:
        raise SeedOutOfRange(f"the range {item} names {last_seed - first_seed + 1} seeds, more than "
                             f"{MOST_SEEDS_IN_A_RANGE}")
    return [str(seed) for seed in range(first_seed, last_seed + 1)]


# --- method settings ------------------------------------------------------------------------------
N_CTX = typer.Option(None, "--n-ctx", help="Learned context vectors M (methods that learn context; default 4).")
CLASS_SPECIFIC = typer.Option(False, "--class-specific-context", help="One learned context per class.")
METHOD_OPTION = typer.Option(None, "--method-option", "-o", metavar="<key=value>", help="A method setting as KEY=VALUE (see `vip methods "
                             "show ID`). Repeatable.")

# --- output ----------------------------------------------------------------------------------------
FORCE = typer.Option(False, "--force", help="Replace --out if it is a run directory (a folder of other files is "
                     "never replaced).")
JSON = typer.Option(False, "--json", help="Print one JSON document.")
QUIET = typer.Option(False, "--quiet", "-q", help="Print no progress or informational lines on stderr (warnings and "
                     "errors are still printed); VIP_QUIET=1 does the same.")


def quiet_option():
    """`QUIET` as the click parameter typer makes of it, once: every command takes it (`vip train -q`),
    as `vip -q` does before the command (`help.HelpCommand`)."""
    global _QUIET_PARAM
    if _QUIET_PARAM is None:
        def flag(quiet: bool = QUIET) -> None:
            """A command of one option, for typer to build its parameter."""

        one = typer.Typer()
        one.command()(flag)
        _QUIET_PARAM = typer.main.get_command(one).params[0]
    return _QUIET_PARAM


_QUIET_PARAM = None


def backbone_settings(backbone: str, arch: Optional[str], pretrained: Optional[str], device: str):
    """--backbone/--arch/--pretrained/--device as BackboneSettings."""
    from vipcli.settings import BackboneSettings

    return BackboneSettings(backbone, arch, pretrained, device)


def encoding_settings(views: int, workers: Optional[int], no_cache: bool = False, encode_batch: int = 64,
                      image_fit: str = "crop"):
    """--views/--workers/--no-cache/--encode-batch/--image-fit as EncodingSettings (an unknown fit refused here)."""
    from vipcli.image_fit import checked_fit
    from vipcli.settings import EncodingSettings

    return EncodingSettings(views=views, workers=workers, use_cache=not no_cache, batch_size=encode_batch,
                            image_fit=checked_fit(image_fit))


def worker_count(workers: Optional[int]) -> int:
    """--workers as a number of processes: the default for None; a negative number is refused as
    `vip train` refuses it (EncodingSettings.validate), before any work."""
    settings = encoding_settings(1, workers)
    settings.validate()
    return settings.workers


def schedule_settings(schedule: str, epochs: Optional[int], batch_size: Optional[int], lr: Optional[float]):
    """--schedule/--epochs/--batch-size/--lr as ScheduleSettings."""
    from vipcli.settings import ScheduleSettings

    return ScheduleSettings(schedule, epochs, batch_size, lr)


def method_options(pairs: Optional[List[str]], n_ctx: Optional[int], class_specific: bool, has_out: bool = True) -> dict:
    """--method-option KEY=VALUE pairs plus the --n-ctx / --class-specific-context shortcuts; `has_out`: the
    command has --out, which a value without `=` (`-o runs/a`) was most likely meant for. A setting given
    twice (`-o n-ctx=2 -o n_ctx=4`, or `--n-ctx 8` beside `-o n-ctx=4`) is refused, as an option given twice is."""
    settings = [_method_setting(pair, has_out) for pair in pairs or []]  # (as given, key, value)
    if n_ctx is not None:
        settings.append((f"--n-ctx {n_ctx}", "n-ctx", str(n_ctx)))
    if class_specific:
        settings.append(("--class-specific-context", "class-specific-context", "true"))
    options: dict = {}
    given: dict = {}  # each setting -> how the command line gave it first
    for shown, key, value in settings:
        name = key.replace("-", "_")
        if name in given:
            raise UsageError(f"{shown}: the setting {key} is given twice (first as {given[name]})",
                             "give each setting once, with the value you mean")
        given[name], options[name] = shown, value
    return options


def _method_setting(pair: str, has_out: bool) -> tuple[str, str, str]:
    """One --method-option KEY=VALUE as (how it was given, KEY, VALUE); a pair without `=` or KEY is refused."""
    key, sep, value = pair.partition("=")
    if not sep or not key.strip():
        out = "; the output folder is given with --out" if has_out and not sep else ""
        raise UsageError(f"--method-option {pair}: expected KEY=VALUE",
                         f"a method setting such as -o n-ctx=8, listed by `vip methods show ID`{out}")
    return f"--method-option {pair}", key.strip(), value.strip()


def parse_shots(value: str) -> int | None:
    """'all' -> None (use every image); a positive integer -> that many per class."""
    if value.strip().lower() == "all":
        return None
    fix = "give the labelled images per class, e.g. --shots 16, or --shots all for every training image"
    try:
        shots = int(value)
    except ValueError:
        raise UsageError(f"--shots {value}: expected a positive number or 'all'", fix) from None
    if shots < 1:
        raise UsageError(f"--shots {value}: expected a positive number or 'all'", fix)
    return shots


_LIST_EXAMPLES = {"--methods": "coop,vip (vip methods list)", "--shots": "1,4,16"}  # others: seeds, "1,2,3"


def parse_list(option: str, value: str, convert=str, expand=None) -> tuple:
    """'a,b, c' -> (convert(a), convert(b), convert(c)); an empty list, a bad item or a repeat is a usage error.

    `expand`: turns one item into the items it stands for (`seed_range`: '1-3' -> '1', '2', '3')."""
    items = [item.strip() for item in value.split(",")]
    if not any(items):
        raise UsageError(f"{option} needs at least one value, got '{value}'",
                         f"e.g. {option} {_LIST_EXAMPLES.get(option, '1,2,3')}, or leave it out for its default")
    if not all(items):
        raise UsageError(f"{option} {value}: an empty item between commas", f"e.g. {option} "
                         + ",".join(item for item in items if item))
    try:
        items = [part for item in items for part in (expand(item) if expand else [item])]
        values = [convert(item) for item in items]
    except ValueError as error:
        detail = f" ({error})" if isinstance(error, SeedOutOfRange) else ""
        raise UsageError(f"{option} {value}: expected a comma-separated list of numbers{detail}",
                         f"e.g. {option} 1,2,3 or {option} 1-5" if expand else None) from None
    written = {}  # each value -> the item it was first written as ('all' for the shots' None)
    for item, converted in zip(items, values):
        written.setdefault(converted, item)
    if len(written) < len(values):  # '--seeds 1,1' is more often a typo for 1,2 than a wish to run 1 once
        repeated = ", ".join(written[v] for v in written if values.count(v) > 1)
        raise UsageError(f"{option} {value}: {repeated} is listed more than once",
                         f"list each value once, e.g. {option} {','.join(written.values())}")
    return tuple(written)


def symptom_sources(symptoms: Optional[List[str]]) -> tuple[str, ...]:
    """The repeated --symptoms values as a tuple; one given twice is a usage error (`packs.distinct_sources`)."""
    from vipcli.packs import distinct_sources

    return distinct_sources(symptoms or ())

