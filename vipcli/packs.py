"""Symptom packs: one YAML file per disease or finding, listing its visual symptoms.

Format (contract):
    name: melanoma                 # the disease/finding
    aliases: [mel]                 # other folder names that mean the same class
    modality: dermoscopic images
    symptoms: [plain visual phrases, never naming the disease]
    source: {kind: paper|llm|manual, ...provenance}
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path

from vipcli.checkpoint import FORMAT as RUN_FORMAT  # run.yaml's `format`: a run's symptoms read as packs
from vipcli.checkpoint import refuse_run_in_training
from vipcli.errors import UsageError, VipError
from vipcli.pack_yaml import NO_LINES, Lines, read_yaml

SOURCE_KINDS = ("paper", "llm", "manual")


@dataclass(frozen=True)
class SymptomPack:
    """A validated symptom pack."""

    name: str  # disease or finding, e.g. "melanoma"
    symptoms: tuple[str, ...]  # plain visual descriptions, in the order given
    aliases: tuple[str, ...] = ()  # other class-folder names this pack matches
    modality: str = ""  # e.g. "dermoscopic images"
    source: dict = field(default_factory=dict)  # provenance: kind, citation or model/prompts/date
    path: str = ""  # where it was loaded from ("" when built in memory)

    def to_dict(self) -> dict:
        """The pack as a YAML/JSON-ready mapping in the pack format."""
        return {"name": self.name, "aliases": list(self.aliases), "modality": self.modality,
                "symptoms": list(self.symptoms), "source": self.source}

    def matches(self, class_name: str) -> bool:
        """True if `class_name` is this pack's name or an alias (case, _ - space insensitive)."""
        key = normalize_name(class_name)
        return key in {normalize_name(n) for n in (self.name, *self.aliases)}


LIGATURES = str.maketrans({"æ": "ae", "œ": "oe"})  # written as two letters in the packs' names and aliases


def normalize_name(name: str) -> str:
    """Lower-case, fold accents and ligatures, and collapse `_`, `-` and spaces, so `Normal_Lung` == `normal lung`
    and `Nævus` == `naevus`, `névus` == `nevus`."""
    folded = unicodedata.normalize("NFKD", name.strip().lower().translate(LIGATURES))
    return re.sub(r"[\s_\-]+", " ", "".join(c for c in folded if not unicodedata.combining(c)))


def pack_in_name(class_name: str, packs: list[SymptomPack]) -> SymptomPack | None:
    """The pack whose name or alias is a whole word or words of `class_name` but not all of it (the
    shipped 'pneumonia' in `bacterial_pneumonia`), the longest such spelling first; None if none is."""
    words = normalize_name(class_name).split()
    found = []
    for pack in packs:
        for spelling in (pack.name, *pack.aliases):
            part = normalize_name(spelling).split()
            if 0 < len(part) < len(words) and any(words[i:i + len(part)] == part for i in range(len(words))):
                found.append((len(part), pack))
    return max(found, key=lambda item: item[0])[1] if found else None


def unknown_pack(message: str, typed: str, shipped: list) -> UsageError:
    """The error for a pack name `typed` that no shipped pack has: `message`, then "; did you mean
    'melanoma'?" when `typed` holds a shipped pack's name ('pneumonia' in `viral_pneumonia`) or is a
    typo of a name or alias, and the shipped names as the fix."""
    from vipcli.plugins import closest_name

    spellings = {normalize_name(s): s for pack in shipped for s in (pack.name, *pack.aliases)}
    inside = pack_in_name(typed, shipped)
    close = normalize_name(inside.name) if inside else closest_name(normalize_name(typed), spellings)
    hint = f"; did you mean '{spellings[close]}'?" if close else ""
    return UsageError(message + hint, "shipped packs: " + ", ".join(pack.name for pack in shipped))


def _string_list(path: Path, data: dict, key: str, required: bool, lines: Lines = NO_LINES) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        if required:
            raise VipError(f"{_at(path, lines, key)}: symptom pack has no '{key}' list",
                           f"add '{key}:' with a list of strings")
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        spelled = lines.spelled(key)
        raise VipError(f"{_at(path, lines, key)}: '{spelled}' is {_what(value)}, not a list",
                       f"write each of its {key} on its own '  - ' line under '{spelled}:'")
    bad = next((i for i, v in enumerate(value) if not (isinstance(v, str) and v.strip())), None)
    if bad is not None:
        raise _bad_item(path, data, key, bad, lines)
    return tuple(v.strip() for v in value)


def _at(path: Path, lines: Lines, key: str, index: int | None = None) -> str:
    """`path`, with `:LINE` when the line of `key` (or of its item `index`) is known."""
    line = lines.line(key, index)
    return f"{path}:{line}" if line else str(path)


def _bad_item(path: Path, data: dict, key: str, index: int, lines: Lines) -> VipError:
    """The error for item `index` of list `key` that is not text: what YAML read it as, and the fix."""
    item, what = data[key][index], {"symptoms": "symptom", "aliases": "alias"}.get(key, key)
    where = f"{_at(path, lines, key, index)}: {what} {index + 1} of '{data.get('name')}'"
    if item is None or (isinstance(item, str) and not item.strip()):
        return VipError(f"{where} is empty", "remove the empty '-' line, or write the symptom after it")
    written = lines.written(key, index) or _as_written(item)
    quoted = '"' + written.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return VipError(f"{where} was read as {_what(item)}, not as text", f"put it in quotes: - {quoted}")


def _what(value) -> str:
    """What YAML made of an unquoted value, in words."""
    if isinstance(value, dict):
        return "a 'key: value' mapping (a ': ' starts one)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (YAML reads yes, no, on, off, true and false unquoted as true or false)"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list (brackets start one)"
    return f"a {type(value).__name__}"


def _as_written(value) -> str:
    """An unquoted value as it was probably typed (for values built in memory, with no file to quote)."""
    if isinstance(value, dict) and len(value) == 1:
        key, inner = next(iter(value.items()))
        return f"{key}: {inner}" if inner is not None else f"{key}:"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def symptom_key(symptom: str) -> str:
    """`symptom` as repeats are found: in lower case, its punctuation (. , ; : ' " ( ) - _ / ...) read as spaces
    and its spaces collapsed, so "Irregular border." repeats "irregular border" and "red-brown" "red brown";
    symbols that change the meaning ("> 6 mm", "HER2+") are kept."""
    return " ".join("".join(" " if unicodedata.category(c).startswith("P") else c for c in symptom.casefold()).split())


def _first_repeat(symptoms: tuple[str, ...]) -> tuple[str, str, int] | None:
    """(the first symptom, in sorted order, that repeats another up to case, spacing and punctuation (`symptom_key`),
    another spelling of it (itself if written the same), the index of its last repeat), or None; one pass."""
    groups: dict[str, list[int]] = {}
    for index, symptom in enumerate(symptoms):
        groups.setdefault(symptom_key(symptom), []).append(index)
    repeated = [group for group in groups.values() if len(group) > 1]
    if not repeated:
        return None
    named, group = min((symptoms[index], group) for group in repeated for index in group)
    other = next((symptoms[index] for index in group if symptoms[index] != named), named)
    return named, other, group[-1]


def pack_from_dict(data: dict, path: str | Path = "<memory>", lines: Lines = NO_LINES) -> SymptomPack:
    """Validate a parsed pack document and return the pack; `lines` (from a file) puts the line in errors."""
    path = Path(path)
    if not isinstance(data, dict):
        raise VipError(f"{path}: a symptom pack must be a YAML mapping with 'name' and 'symptoms'")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise VipError(f"{path}: symptom pack has no 'name'", "add 'name: <disease>'")
    symptoms = _string_list(path, data, "symptoms", required=True, lines=lines)
    if not symptoms:
        raise VipError(f"{_at(path, lines, 'symptoms')}: symptom pack '{name}' lists no symptoms",
                       f"list them under '{lines.spelled('symptoms')}:', one '  - symptom' line each")
    repeat = _first_repeat(symptoms)
    if repeat is not None:
        duplicate, other, again = repeat
        spelled = "" if other == duplicate else f" as {other!r} (the two differ only in case, spacing or punctuation)"
        raise VipError(f"{_at(path, lines, 'symptoms', again)}: symptom pack '{name}' repeats {duplicate!r}{spelled}",
                       "remove the duplicate")
    source = data.get("source") or {}
    if isinstance(source, str):
        source = {"kind": source}
    if not isinstance(source, dict):
        raise VipError(f"{path}: 'source' must be a mapping (kind: paper|llm|manual, ...)")
    kind = source.get("kind")
    if kind is not None and kind not in SOURCE_KINDS:
        raise VipError(f"{path}: source.kind of symptom pack '{name}' is {kind!r}, not one of {', '.join(SOURCE_KINDS)}",
                       "use 'manual' for symptoms you wrote yourself")
    modality = data.get("modality") or ""
    return SymptomPack(
        name=name.strip(),
        symptoms=symptoms,
        aliases=_string_list(path, data, "aliases", required=False, lines=lines),
        modality=str(modality),
        source=dict(source),
        path=str(path),
    )


def load_pack(path: str | Path) -> SymptomPack:
    """Read and validate one pack file; errors name the file (and the line, where one is to blame)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VipError(f"symptom pack file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise VipError(f"{path}: cannot read symptom pack: {error}") from None
    data, node = read_yaml(text, path)
    return pack_from_dict(data, path, Lines.of_mapping(node, text))


def load_symptom_file(path: str | Path) -> list[SymptomPack]:
    """A pack file, or a mapping `{class name: [symptoms]}` giving one pack per class."""
    path = run_yaml(Path(path)) or Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VipError(f"symptoms file not found: {path}") from None
    except UnicodeDecodeError:
        raise VipError(f"{path}: symptoms file is not UTF-8 text", "save it as UTF-8") from None
    except OSError as error:
        from vipcli.shell import permissions_hint

        raise VipError(f"{path}: cannot read symptoms file: {error.strerror or error}",
                       f"check that the file can be read by you ({permissions_hint('ls -l')})") from None
    data, node = read_yaml(text, path)
    shapes = "write {class: [symptom, ...]} or a pack with 'name' and 'symptoms'"
    if isinstance(data, dict) and data.get("format") == RUN_FORMAT:
        return packs_of_run(data, path)
    if data is None:
        raise VipError(f"{path}: symptoms file is empty", shapes)
    if not isinstance(data, dict):
        shape = "a list" if isinstance(data, list) else "a single value"
        raise VipError(f"{path}: symptoms file must be a YAML mapping, not {shape}", shapes)
    return packs_from_mapping(data, path, node, text)


def run_yaml(path: Path) -> Path | None:
    """The run.yaml of a run directory given as its folder or its model.safetensors, else None."""
    folder = path if path.is_dir() else path.parent if path.suffix == ".safetensors" else None
    if folder is not None and (folder / "run.yaml").is_file() and (folder / "model.safetensors").is_file():
        return folder / "run.yaml"
    return None


def check_not_a_run_directory(out: Path, option: str = "--out") -> None:
    """VipError when `out`, a folder packs are about to be written into, is a run directory: `--symptoms OUT`
    reads a run directory as the symptoms its run trained on (its run.yaml), never the packs written beside
    them, so the packs would be silently passed over (and `vip train --force --out OUT` would delete them)."""
    if Path(out).is_dir() and run_yaml(Path(out)):
        raise VipError(f"{option} {out} is a run directory of vip train: --symptoms {out} would read the symptoms "
                       "that run trained on, not the packs written there", f"choose another {option} for the packs")


def packs_of_run(document: dict, path: Path) -> list[SymptomPack]:
    """The symptoms a `vip train` run used (its run.yaml's `symptoms`), one pack per class named after
    the class folder, with source kind "run"; a VipError when the run's method used none."""
    symptoms = document.get("symptoms") or {}
    if not isinstance(symptoms, dict):
        raise VipError(f"{path}: the run's 'symptoms' is not a mapping of class to symptoms",
                       "it may be damaged; pass a pack or symptoms file instead")
    if not symptoms:
        raise VipError(f"{path}: the run used no symptoms (its method, {document.get('method', '?')}, needs none)",
                       "pass a pack file, a symptoms file or a shipped pack's name")
    source = {"kind": "run", "note": f"the symptoms vip train recorded in {path}"}
    return [replace(pack_from_dict({"name": name, "symptoms": listed}, path), source=source)
            for name, listed in symptoms.items()]


def packs_from_mapping(data, label: str | Path, node=None, text: str = "") -> list[SymptomPack]:
    """The packs of a symptoms file's content: one pack (a mapping with `name`/`symptoms`), or
    `{class name: [symptoms]}` giving one pack per class. `label` names it in errors and as the
    packs' `path` (the file, or where the mapping came from: "the symptoms dict" of `vipcli.api.train`);
    `node` and `text` (the file's YAML tree and text, from `read_yaml`) put the line in errors."""
    if isinstance(data, dict) and "symptoms" not in data and "name" not in data:
        check_each_class_once(data, label)
        entries = list(getattr(node, "value", None) or [])
        if len(entries) != len(data):  # built in memory (or a YAML merge key): no lines
            entries = [None] * len(data)
        return [_class_pack(name, listed, label, entry, text) for (name, listed), entry in zip(data.items(), entries)]
    return [pack_from_dict(data, label, Lines.of_mapping(node, text))]


def check_each_class_once(data: dict, label: str | Path) -> None:
    """VipError for a `{class name: [symptoms]}` mapping that names one class twice in two spellings (`melanoma` and
    `Melanoma`, `basal_cell` and `basal cell`): classes are matched ignoring case, accents, `_`, `-` and spaces
    (`normalize_name`), so only the first entry's symptoms were used, without a word."""
    given: dict[str, object] = {}  # each class's key -> how the mapping spelled it first
    for name in data:
        key = normalize_name(str(name))
        if key in given:
            raise VipError(f"{label}: {given[key]!r} and {name!r} name the same class (vip matches class names "
                           "ignoring case, accents, '_', '-' and spaces), so one of them would be ignored",
                           "give each class's symptoms once, under one name")
        given[key] = name


def _class_pack(name, listed, label: str | Path, entry=None, text: str = "") -> SymptomPack:
    """The pack of one `class: [symptom, ...]` entry (`entry`: its key and value nodes, when read from a
    file). A class named by a number (a grade folder `0`, given from Python) is named by its text, and an
    entry with nothing under it is an empty list of symptoms."""
    lines = NO_LINES
    if entry is not None:
        lines = Lines({"name": (entry[0], entry[0]), "symptoms": entry}, text)
    if isinstance(name, (int, float)):
        name = str(name).lower() if isinstance(name, bool) else str(name)
    symptoms = [] if listed is None else listed
    return pack_from_dict({"name": name, "symptoms": symptoms, "source": {"kind": "manual"}}, label, lines)


def shipped_pack_dir() -> Path:
    """The folder of packs installed with vip."""
    from importlib.resources import files

    return Path(str(files("vip_symptom_packs")))


def shipped_packs() -> list[SymptomPack]:
    """Every pack shipped with vip, sorted by name."""
    return sorted((load_pack(p) for p in shipped_pack_dir().glob("*.yaml")), key=lambda p: p.name.lower())


def distinct_sources(sources) -> tuple[str, ...]:
    """`sources` (symptom files, folders, pack names, run directories) as a tuple of strings; one given twice
    (`--symptoms a.yaml --symptoms ./a.yaml`, or `symptoms=["a.yaml", "./a.yaml"]` in `vipcli.api`) is a usage
    error, as a value listed twice in `--seeds` is: more often a slip for another pack than a wish."""
    import os

    values = tuple(str(source) for source in sources)
    seen: dict[str, str] = {}
    for value in values:
        first = seen.get(os.path.normpath(value))
        if first is not None:
            spelled = "" if first == value else f" (as {first!r})"
            raise UsageError(f"--symptoms {value!r} is given twice{spelled}", "give each source once")
        seen[os.path.normpath(value)] = value
    return values


def collect_packs(sources: list[str | Path], shipped: list[SymptomPack] | None = None) -> list[SymptomPack]:
    """Packs from user sources (pack files, symptom files, folders of them, or shipped names), then
    `shipped` (default: `shipped_packs()`, read here).

    User packs come first so they take precedence over shipped ones with the same name.
    """
    shipped = shipped_packs() if shipped is None else shipped
    return [pack for _, packs in _packs_by_source(sources, shipped) for pack in packs] + shipped


def _packs_by_source(sources: list, shipped: list[SymptomPack]) -> list[tuple[str, list[SymptomPack]]]:
    """(source as given, its packs) for each `--symptoms` source (a path, a shipped pack's name, or a
    SymptomPack already read), in order."""
    found = []
    for source in sources:
        if isinstance(source, SymptomPack):  # given already read (`vipcli.api.train(symptoms={...})`)
            found.append((source.path or source.name, [source]))
            continue
        path = Path(source)
        if path.is_dir() and run_yaml(path):  # a run directory: the symptoms it trained on
            found.append((str(source), load_symptom_file(path)))
        elif path.is_dir():
            files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            if not files:
                raise VipError(f"--symptoms {source}: folder has no .yaml packs")
            found.append((str(source), [pack for f in files for pack in load_symptom_file(f)]))
        elif path.is_file():
            found.append((str(source), load_symptom_file(path)))
        else:
            missing = missing_source_error(source, shipped)
            if missing is not None:
                raise missing
            found.append((str(source), [p for p in shipped if p.matches(str(source))]))
    return found


def missing_source_error(source: str | Path, shipped: list[SymptomPack]) -> VipError | None:
    """The error for a `--symptoms` source that names no file, folder or shipped pack (a run still being trained
    there is said as such); None when it names one. Nothing is read."""
    path = Path(source)
    if path.is_dir() or path.is_file():
        return None
    if path.suffix.lower() in (".yaml", ".yml") or len(path.parts) > 1:  # a path, not a pack's name
        refuse_run_in_training(path)
        return VipError(f"--symptoms {source}: no such file or folder",
                        "check the path, or give a shipped pack's name: vip symptoms list")
    if any(p.matches(str(source)) for p in shipped):
        return None
    refuse_run_in_training(path)
    return unknown_pack(f"--symptoms {source}: no such file, folder or shipped pack", str(source), shipped)


def check_sources_exist(sources) -> None:
    """Refuse, before the data is read, a `--symptoms` source that names no file, folder or shipped pack (a typo
    costs no listing and hashing of the images); the packs themselves are read once the classes are known."""
    named = [source for source in sources if not isinstance(source, SymptomPack)]
    shipped = shipped_packs() if named else []
    for source in named:
        missing = missing_source_error(source, shipped)
        if missing is not None:
            raise missing


def symptoms_for_classes(class_names: list[str], sources: list[str | Path] = ()) -> dict[str, list[str]]:
    """Map each class folder name to its symptoms, from user sources first, then shipped packs.

    Raises a VipError naming every class without symptoms and how to get them.
    """
    return symptoms_of(packs_for_run(class_names, sources, required=True))


def packs_for_run(class_names: list[str], sources: list[str | Path] = (), required: bool = True,
                  data: str | Path | None = None) -> dict[str, SymptomPack]:
    """Each class's pack for a run: an error naming the classes without one when `required`,
    else {} (symptoms are then only recorded when every class has a pack). `data`: the data folder, which
    the error's `vip symptoms generate --data` hint names.

    Warns when the packs describe different imaging modalities (a `normal/` folder of fundus
    photographs matched to the chest X-ray "normal lung").
    """
    from vipcli import console

    try:
        packs = packs_for_classes(class_names, sources, data=data)
    except VipError:
        if required:
            raise
        return {}
    modalities = {pack.modality for pack in packs.values() if pack.modality}
    if len(modalities) > 1:
        console.warn(f"the matched symptom packs describe different modalities ({', '.join(sorted(modalities))}); "
                     f"if a class matched the wrong pack, pass your own with --symptoms FILE")
    for alike in classes_alike(packs):
        console.warn(same_symptoms_warning(alike, "give each class symptoms of its own: `vip symptoms generate`, or "
                                                  "--symptoms FILE"))
    return packs


def same_symptoms_warning(classes: list[str], fix: str) -> str:
    """The warning for `classes` whose packs hold the same symptoms (`classes_alike`), ending with `fix` (markup
    escaped: class names are the user's)."""
    from rich.markup import escape

    names = ", ".join(map(repr, classes[:-1])) + f" and {classes[-1]!r}"
    return escape(f"classes {names} have the same symptoms, so their symptom prompts cannot tell them apart: "
                  f"zero-shot with symptoms calls them alike, and ViP learns their difference from its merge tokens "
                  f"alone ({fix})")


def classes_alike(packs: dict[str, SymptomPack]) -> list[list[str]]:
    """The groups of two or more classes whose packs hold the same symptoms (as a set, up to case, spacing and
    punctuation: `symptom_key`), in class order."""
    groups: dict[frozenset[str], list[str]] = {}
    for name, pack in packs.items():
        groups.setdefault(frozenset(map(symptom_key, pack.symptoms)), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def symptoms_of(packs: dict[str, SymptomPack]) -> dict[str, list[str]]:
    """class -> its pack's symptoms."""
    return {name: list(pack.symptoms) for name, pack in packs.items()}


def matched_packs_line(packs: dict[str, SymptomPack]) -> str:
    """Where each class's symptoms came from: 'symptoms: melanoma <- short.yaml; nevus <- pack 'nevus''.

    A shipped pack is named; a user's pack or symptom file is named by its path (and the pack's
    name when it differs from the class's).
    """
    return "symptoms: " + "; ".join(f"{name} <- {_pack_source(name, pack)}" for name, pack in packs.items())


def _pack_source(class_name: str, pack: SymptomPack) -> str:
    """`pack 'nevus'` for a shipped pack, else the file it was read from."""
    if not pack.path or Path(pack.path).resolve().parent == shipped_pack_dir().resolve():
        return f"pack '{pack.name}'"
    if normalize_name(pack.name) == normalize_name(class_name):
        return pack.path
    return f"{pack.path} (pack '{pack.name}')"


def packs_for_classes(class_names: list[str], sources: list[str | Path] = (), warn: bool = True,
                      data: str | Path | None = None) -> dict[str, SymptomPack]:
    """Map each class folder name to its pack, from user sources first, then shipped packs.

    Warns about a user's pack that names its class or is not worded for a CLIP-like model, unless
    `warn` is False (a second look at packs already loaded once). Raises a VipError naming every class
    without a pack and how to get one (`vip symptoms generate --data <data>`, the folder as given, where
    `data` is known).
    """
    shipped = shipped_packs()
    given = _packs_by_source(list(sources), shipped)
    _check_sources_match(given, class_names)
    near = _near_misses(given, class_names)
    packs = [pack for _, listed in given for pack in listed] + shipped
    result, missing = {}, []
    for class_name in class_names:
        pack = next((p for p in packs if p.matches(class_name)), None)
        if pack is None:
            missing.append(class_name)
        else:
            result[class_name] = pack
    if missing:
        typos = "".join(f"the pack '{near[m][1]}' of --symptoms {near[m][0]} matches no class: if it is meant for "
                        f"'{m}', rename it or list '{m}' under its aliases; or " for m in missing if m in near)
        raise VipError(
            f"no symptoms for {'class' if len(missing) == 1 else 'classes'} {', '.join(repr(m) for m in missing)}",
            f"{typos}{_packs_in_names_hint(missing, result, shipped)}write packs with `{_generate_command(data)}` (every class without one) or pass --symptoms "
            "FILE (YAML: {class: [symptom, ...]}); `vip symptoms list` shows the shipped packs",
        )
    if warn:
        from vipcli import console

        for class_name, pack in result.items():
            if class_name in near and pack in shipped:  # the user's misspelt pack silently replaced by a shipped one
                source, typed = near[class_name]
                console.warn(f"--symptoms {source}: its pack '{typed}' matches no class, and class '{class_name}' "
                             f"uses the shipped pack '{pack.name}' (if '{typed}' is meant for '{class_name}', rename "
                             f"it or list '{class_name}' under its aliases)")
        _warn_named_classes(result, shipped)
    return result


def _generate_command(data: str | Path | None) -> str:
    """`vip symptoms generate --data <data>`, quoted for the user's shell (`--data DIR` where it is not known)."""
    from vipcli.shell import command

    return "vip symptoms generate --data DIR" if data is None else command("vip", "symptoms", "generate", "--data", data)


def _packs_in_names_hint(missing: list[str], matched: dict[str, SymptomPack], shipped: list[SymptomPack]) -> str:
    """For class folders holding a shipped pack's name (`bacterial_pneumonia`, `viral_pneumonia`: 'pneumonia'),
    which matching goes by the whole name only: where to start their symptoms, ending in '; or ' ("" if none)."""
    by_pack: dict[str, list[str]] = {}
    for class_name in missing:
        pack = pack_in_name(class_name, shipped)
        if pack is not None:
            by_pack.setdefault(pack.name, []).append(class_name)
    hints = []
    for name, classes in by_pack.items():
        taken = [other for other, pack in matched.items() if pack.name == name]
        listed = " and ".join(repr(c) for c in classes)
        if len(classes) + len(taken) > 1:  # one pack's symptoms for two classes: they could not be told apart
            verb = "hold" if len(classes) > 1 else "holds"
            hints.append(f"{listed} {verb} the name of the shipped pack '{name}' ({show_command(name)})"
                         + (f", which class {taken[0]!r} uses" if taken else "")
                         + ", but one pack's symptoms cannot tell classes apart: give each its own")
        else:
            hints.append(f"{listed} holds the name of the shipped pack '{name}': to use it, rename the folder "
                         f"'{name}', or copy its symptoms ({show_command(name)}) into a --symptoms FILE "
                         f"under '{classes[0]}:'")
    return "".join(hint + "; or " for hint in hints)


def show_command(pack_name: str) -> str:
    """`vip symptoms show NAME` for a shipped pack, in backquotes, its spaces written as `-` so that the name is one word
    on any shell (`vip symptoms show seborrheic-keratosis`; packs are matched ignoring `-`, `_` and spaces)."""
    return f"`vip symptoms show {pack_name.replace(' ', '-')}`"


def _near_misses(given: list[tuple[str, list[SymptomPack]]], class_names: list[str]) -> dict[str, tuple[str, str]]:
    """class -> (the --symptoms source, the pack's name) of a given pack that matches no class but is a typo
    away from this one (a pack 'melanomma' for the class folder 'melanoma')."""
    from vipcli.plugins import closest_name

    by_key = {normalize_name(name): name for name in class_names}
    near = {}
    for source, packs in given:
        for pack in packs:
            if any(pack.matches(name) for name in class_names):
                continue
            close = closest_name(normalize_name(pack.name), by_key)
            if close is not None and by_key[close] not in near:
                near[by_key[close]] = (source, pack.name)
    return near


def _check_sources_match(given: list[tuple[str, list[SymptomPack]]], class_names: list[str]) -> None:
    """Refuse a `--symptoms` source none of whose packs matches a class (it would be ignored without a word)."""
    for source, packs in given:
        if not any(pack.matches(name) for pack in packs for name in class_names):
            names = ", ".join(repr(p.name) for p in packs)
            raise VipError(
                f"--symptoms {source}: its pack{'s' if len(packs) > 1 else ''} {names} match{'' if len(packs) > 1 else 'es'} "
                f"no class of the data ({', '.join(class_names)})",
                "name each pack after its class folder, or list the folder's name under 'aliases'")


def _warn_named_classes(packs: dict[str, SymptomPack], shipped: list[SymptomPack]) -> None:
    """Warn about each symptom of a user's pack that names its own class (ViP describes, never names),
    and about a user's pack whose symptoms are not English or only name a disease (`warn_wording`)."""
    for class_name, pack in packs.items():
        if pack not in shipped:
            warn_named_symptoms(pack, class_name)
            warn_wording(pack, class_name, others=tuple(packs))


def warn_wording(pack: SymptomPack, class_name: str | None = None, others: tuple[str, ...] = (),
                 label: str | None = None, generated: bool = False) -> None:
    """At most two warnings about `pack`: its symptoms do not look English, or some only name a disease
    (the pack's name, an alias, `class_name`, one of `others` or a disease family; see
    `vipcli.symptoms.wording`). Symptoms `warn_named_symptoms` names are not listed again. `generated`: the
    pack was just generated (the fix is another model, not generating again)."""
    from rich.markup import escape

    from vipcli import console
    from vipcli.symptoms.parse import names_disease
    from vipcli.symptoms.wording import wording_warnings

    own = (*pack.aliases, class_name) if class_name else tuple(pack.aliases)
    skip = {s for s in pack.symptoms if names_disease(s, pack.name, own)}
    names = (pack.name, *own, *others)
    for line in wording_warnings(label or pack.path or pack.name, class_name or pack.name, pack.symptoms, names, skip,
                                 generated):
        console.warn(escape(line))


def names_image_files(pack: SymptomPack) -> bool:
    """Whether `pack` records the paths of the images it was generated from (as vip 0.1.0 wrote
    `source.images`: the folder's full path and the file names, which often carry record numbers)."""
    images = pack.source.get("images") if isinstance(pack.source, dict) else None
    return isinstance(images, dict) and "files" in images


def without_image_names(source: dict) -> dict:
    """A copy of a pack's `source` whose image record keeps the folder's last name and the number of
    files instead of the folder's full path and the file names (see `names_image_files`)."""
    images = source.get("images")
    if not (isinstance(images, dict) and "files" in images):
        return dict(source)
    files = images["files"] if isinstance(images["files"], list) else []
    kept = {key: value for key, value in images.items() if key not in ("folder", "files")}
    folder = str(images.get("folder") or "").replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return {**source, "images": {"folder": folder, "file_count": len(files), **kept}}


def warn_image_names(pack: SymptomPack) -> None:
    """One warning for a pack that records image folder paths and file names (vip 0.1.0's format)."""
    from vipcli import console

    if names_image_files(pack):
        console.warn(f"{pack.path}: this pack (written by vip 0.1.0) records the full path and file names of the "
                     "images it was generated from, which can identify patients: delete source.images.folder and "
                     "source.images.files before sharing it (packs vip writes now record neither)")


def warn_named_symptoms(pack: SymptomPack, class_name: str | None = None) -> None:
    """One warning per symptom of `pack` that names its class (the pack's name, an alias or `class_name`)."""
    from vipcli import console
    from vipcli.symptoms.parse import names_disease

    names = (*pack.aliases, class_name) if class_name else tuple(pack.aliases)
    for symptom in pack.symptoms:
        if names_disease(symptom, pack.name, names):
            console.warn(f"{pack.path}: symptom {symptom!r} names its class '{pack.name}' (ViP describes a class "
                         "by what it looks like, never by its name: reword it, or the prompts learn the name)")
