"""Read a symptom file's YAML keeping where each value was written, so a pack author's slip is named by line.

`read_yaml` refuses what YAML itself would pass over in silence (a key written twice: YAML keeps the
last and the first list is lost) and says how to fix the common syntax slips (a tab used to indent).
`Lines` gives the line of a pack's field or of one item of its list, for the errors of `vipcli.packs`.
"""

from __future__ import annotations

from pathlib import Path

from vipcli.errors import VipError


class Lines:
    """Where the fields of one pack were written: field name -> (key node, value node) of the YAML tree."""

    def __init__(self, entries: dict, text: str = ""):
        self.entries = entries  # "name" / "symptoms" / "aliases" -> (key node, value node)
        self.text = text  # the file's text, to quote an item as written

    @classmethod
    def of_mapping(cls, node, text: str) -> "Lines":
        """The fields of a pack written as a mapping (`name:`, `symptoms:` ...)."""
        import yaml

        if not isinstance(node, yaml.MappingNode):
            return cls({}, text)
        return cls({str(key.value): (key, value) for key, value in node.value}, text)

    def line(self, field: str, index: int | None = None) -> int | None:
        """The 1-based line of `field`'s key, or of item `index` of its list; None when not known."""
        found = self.entries.get(field)
        if found is None:
            return None
        key, value = found
        items = getattr(value, "value", None)
        if index is not None and isinstance(items, list) and 0 <= index < len(items):
            return items[index].start_mark.line + 1
        return key.start_mark.line + 1

    def spelled(self, field: str) -> str:
        """`field` as its key is written in the file: the class name of a `{class: [symptom, ...]}` file."""
        found = self.entries.get(field)
        return str(found[0].value) if found else field

    def written(self, field: str, index: int) -> str | None:
        """Item `index` of `field`'s list as written in the file (its first line), or None when not known."""
        found = self.entries.get(field)
        items = getattr(found[1], "value", None) if found else None
        if not self.text or not isinstance(items, list) or not 0 <= index < len(items):
            return None
        lines = self.text[items[index].start_mark.index:items[index].end_mark.index].strip().splitlines()
        return lines[0].strip() if lines else None


NO_LINES = Lines({})


def read_yaml(text: str, path: Path):
    """Parse a symptom file's `text`; returns (data, its root node) (the node is None for an empty file).

    Raises:
        VipError: malformed YAML (file and line, and "indent with spaces" for a tab), or a key written
            twice in one mapping (both lines: YAML would keep only the last).
    """
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _names_as_written(node)
            _refuse_repeated_keys(node, path)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as error:
        raise yaml_error(path, error) from None
    finally:
        loader.dispose()
    return data, node


NULL, MERGE = "tag:yaml.org,2002:null", "tag:yaml.org,2002:merge"  # keys left as YAML reads them: `~:` and `<<:`


def _names_as_written(node) -> None:
    """Read the top-level keys of `node` as the text written: class folders named `0`, `1` or `no` stay
    "0", "1" and "no" (YAML makes numbers and false of them, and then 0 and false are the same key)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.style is None and key.tag not in (NULL, MERGE):
                key.tag = "tag:yaml.org,2002:str"


def yaml_error(path: Path, error) -> VipError:
    """One line for a YAML syntax error: the file, the line, the parser's words and the fix."""
    mark = getattr(error, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if "'\\t'" in problem:
        fix = "indent with spaces, not tabs"
    elif "<block end>" in problem or "indentation" in problem:
        fix = "check the indentation of that line: the entries of one list or mapping start in the same column"
    else:
        fix = "fix the YAML syntax at that line"
    return VipError(f"{where}: malformed symptom pack YAML: {problem}", fix)


def _refuse_repeated_keys(node, path: Path, top: bool = True, visited: set | None = None) -> None:
    """VipError at the second of two equal keys of any mapping in the tree under `node` (`top`: the file's own
    mapping, whose keys are classes or a pack's fields). Each node is looked at once (`visited`): an alias
    (`*a`) is the node of its anchor, which may hold itself (`&a [*a]`) or be named many times over."""
    import yaml

    visited = set() if visited is None else visited
    if id(node) in visited:
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                first = seen.setdefault((key.tag, key.value), key)
                if first is not key:
                    raise _repeated(path, key.value, first.start_mark.line + 1, key.start_mark.line + 1, top)
            _refuse_repeated_keys(value, path, False, visited)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_repeated_keys(item, path, False, visited)


def _repeated(path: Path, key: str, first: int, second: int, top: bool) -> VipError:
    """The error for `key` written at lines `first` and `second` of one mapping."""
    where = f"{path}:{second}: '{key}' is written twice (lines {first} and {second}); YAML would keep only the second"
    if not top:
        return VipError(where, f"keep one '{key}:'")
    if key in ("name", "symptoms", "aliases", "modality", "source"):
        return VipError(where, "one pack file holds one pack: put each pack in its own file, or write "
                               "{class: [symptom, ...]} with each class once")
    return VipError(f"{where}, and the symptoms under line {first} would be lost",
                    f"merge the two lists under one '{key}:'")
