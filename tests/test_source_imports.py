"""The source a built-in backbone's feature-cache key digests: the modules of `vip_backbones` its module
imports (read with `ast`, transitively), and all of `vipcli`; nothing it can run is left out."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from vipcli import source_imports
from vipcli.source_imports import dynamic_imports, imported_modules, imports_in, package_folder

BUILTINS = "vip_backbones"
# Every place in vip_backbones that imports or runs code the walker cannot name, and why it cannot change
# which of the package's modules a backbone runs. A new one fails test_builtin_backbones_import_nothing_unseen:
# make the walker see it (a literal import) or, if it imports nothing of vip_backbones, add it here with why.
REVIEWED = {
    ("vip_backbones.openclip_base", "skipped_weight_init", "import_module(<computed name>)"):
        "imports torch's own modules, named in a literal tuple, to make their weight init a no-op",
    ("vip_backbones.openclip_base", "import_open_clip", "reload(...)"):
        "imports open_clip's own open_clip.hf_model again (a library module, keyed by open_clip's version), once a "
        "model needs the transformers that the `vip` command left out of open_clip's first import",
}


def write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_the_walker_follows_every_import_it_can_read(tmp_path, monkeypatch):
    """Imports inside functions, relative ones, a submodule imported from its package, literal
    import_module/__import__/sys.modules names, and the packages above each; not a module never imported."""
    write_package(tmp_path / "walked", {
        "__init__.py": "",
        "a.py": """
            import walked.b
            from walked.d import thing

            def later():
                from . import c
                import importlib, sys
                importlib.import_module("walked.e")
                __import__("walked.sub.h")
                return sys.modules["walked.f"]
            """,
        "b.py": "", "d.py": "thing = 1\n", "e.py": "", "f.py": "", "g.py": "",
        "c.py": "from .sub import i\n",
        "sub/__init__.py": "", "sub/h.py": "", "sub/i.py": "from ..sub import j\n", "sub/j.py": "",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    found = imported_modules(["walked.a"], ("walked",))
    assert sorted(found) == ["walked", "walked.a", "walked.b", "walked.c", "walked.d", "walked.e", "walked.f",
                             "walked.sub", "walked.sub.h", "walked.sub.i", "walked.sub.j"]
    assert found["walked.sub"] == tmp_path / "walked" / "sub" / "__init__.py"
    assert "walked" not in sys.modules  # located, never imported


def test_dynamic_imports_names_each_place_the_walker_cannot_read():
    source = textwrap.dedent("""
        import importlib, re, sys
        importlib.import_module("fine.literal")
        sys.modules.get("fine")
        re.compile("x")

        def load(name, code, path, model):
            model.eval()
            importlib.import_module(name)
            __import__(name)
            exec(code)
            eval(code)
            importlib.util.spec_from_file_location("m", path)
            sys.modules[name]
            sys.modules.get(name)

        class Plugins:
            def scan(self):
                return importlib.metadata.entry_points(group="x")
        """)
    import ast

    sites = dynamic_imports(ast.parse(source))
    assert [(scope, what) for _, scope, what in sites] == [
        ("load", "import_module(<computed name>)"), ("load", "__import__(<computed name>)"), ("load", "exec(...)"),
        ("load", "eval(...)"), ("load", "spec_from_file_location(...)"), ("load", "sys.modules[<computed name>]"),
        ("load", "sys.modules.get(<computed name>)"), ("Plugins.scan", "entry_points(...)")]
    assert imports_in("m", ast.parse(source), False) >= {"fine.literal", "fine", "importlib", "re", "sys"}


def _builtin_modules() -> dict[str, Path]:
    folder = package_folder(BUILTINS)
    names = [BUILTINS] + [f"{BUILTINS}.{path.stem}" for path in sorted(folder.glob("*.py")) if path.stem != "__init__"]
    return imported_modules(names, (BUILTINS,))


def test_builtin_backbones_import_nothing_unseen():
    """A backbone module of vip's own that imported another one through a computed name (importlib,
    __import__, a file run) would change features without changing its key: every such place is reviewed."""
    found = {}
    for name, path in _builtin_modules().items():
        for line, scope, what in dynamic_imports(source_imports._tree(path)):
            found[(name, scope, what)] = line
    unreviewed = sorted(set(found) - set(REVIEWED))
    assert not unreviewed, f"imports the feature-cache key cannot follow (see REVIEWED): {unreviewed}"
    assert set(REVIEWED) <= set(found), f"reviewed places that are gone: {sorted(set(REVIEWED) - set(found))}"


def test_vipcli_imports_no_builtin_backbone():
    """vip's own code is digested whole, but not the backbones: were a vipcli module to import one, a backbone
    running that vipcli code would run a module its key does not digest."""
    folder = package_folder("vipcli")
    offenders = []
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder).with_suffix("").parts
        name = ".".join(("vipcli", *[p for p in parts if p != "__init__"]))
        imported = imports_in(name, source_imports._tree(path), path.name == "__init__.py")
        offenders += [f"{name} imports {module}" for module in imported if module.split(".")[0] == BUILTINS]
    assert not offenders


@pytest.fixture
def backbones_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the vip_backbones folder that the walker reads instead of the installed one."""
    copy = tmp_path / BUILTINS
    shutil.copytree(package_folder(BUILTINS), copy, ignore=shutil.ignore_patterns("weights", "__pycache__"))
    real = source_imports.package_folder
    monkeypatch.setattr(source_imports, "package_folder", lambda name: copy if name == BUILTINS else real(name))
    return copy


def test_an_edit_to_one_backbone_leaves_the_other_backbones_keys_alone(backbones_copy):
    """The key digested the whole backbones package: an edit to the Hugging Face files staled the toy's and
    open_clip's cached features too."""
    from vip_backbones.clip import ClipBackbone
    from vip_backbones.hf_clip import HFClipBackbone
    from vip_backbones.toy import ToyBackbone
    from vipcli.plugins import plugin_source_digest

    kinds = {"toy": ToyBackbone, "clip": ClipBackbone, "hf-clip": HFClipBackbone}

    def digests():
        return {name: plugin_source_digest(kind) for name, kind in kinds.items()}

    def edit(module):
        path = backbones_copy / f"{module}.py"
        path.write_text(path.read_text() + "\n# edited\n")

    before = digests()
    edit("hf_clip")
    after_hf = digests()
    assert after_hf["toy"] == before["toy"] and after_hf["clip"] == before["clip"]
    assert after_hf["hf-clip"] != before["hf-clip"]
    edit("pooled_tower")  # imported by clip and hf-clip, not the toy
    after_pooled = digests()
    assert after_pooled["toy"] == before["toy"]
    assert after_pooled["clip"] != after_hf["clip"] and after_pooled["hf-clip"] != after_hf["hf-clip"]
    edit("toy")
    assert digests()["toy"] != before["toy"]


def test_a_plugin_built_on_a_builtin_backbone_keys_the_modules_that_backbone_imports(backbones_copy):
    """A third party's subclass of a built-in backbone (the medical example's PLIP, a TransformersBackbone plugin)
    digested only the modules of its classes: an edit to pooled_tower.py or hf_preprocessing.py, which its
    encoding and transform run, kept serving the features of the earlier code."""
    from vip_backbones.hf_clip import HFClipBackbone
    from vipcli.plugins import plugin_source_digest

    plugin = type("PlipBackbone", (HFClipBackbone,), {"__module__": "someones_plugin"})
    for module in ("pooled_tower", "hf_preprocessing"):
        before = plugin_source_digest(plugin)
        path = backbones_copy / f"{module}.py"
        path.write_text(path.read_text() + "\n# edited\n")
        assert plugin_source_digest(plugin) != before, module


def test_vips_own_code_is_part_of_every_key_and_a_change_marks_folders_stale(tmp_path, monkeypatch):
    """An edit to vip's pipeline from file to pixels (vipcli/pixels.py, say) changed features under the same key."""
    from vip_backbones.toy import ToyBackbone
    from vipcli.cache_admin import stale_reasons
    from vipcli.features import installation_identity
    from vipcli.plugins import plugin_source_digest

    write_package(tmp_path / "codepkg", {"__init__.py": "", "sub/__init__.py": "", "sub/m.py": "x = 1\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    first = source_imports.package_source_digest("codepkg")
    (tmp_path / "codepkg" / "sub" / "m.py").write_text("x = 2\n")
    second = source_imports.package_source_digest("codepkg")
    (tmp_path / "codepkg" / "n.py").write_text("")
    assert len({first, second, source_imports.package_source_digest("codepkg")}) == 3

    now = installation_identity()
    assert now["vip_code"] == source_imports.package_source_digest("vipcli") != ""
    identity = {**now, "id": "toy", "class": "vip_backbones.toy.ToyBackbone", "code": plugin_source_digest(ToyBackbone)}
    assert stale_reasons(identity) == []
    assert stale_reasons({**identity, "vip_code": "0" * 16}) == ["vip's code changed"]


def test_a_built_backbone_runs_no_code_of_the_package_that_its_key_leaves_out(tiny_clip):
    """What the walker reads against what Python runs: building the toy and a tiny CLIP, describing them,
    transforming and encoding an image and a text call no function of vip_backbones outside the files
    each one's key digests (every Python call is recorded, of modules imported before too)."""
    from PIL import Image

    from vip_backbones.clip import ClipBackbone
    from vip_backbones.toy import ToyBackbone
    from vipcli.features import encode_in_memory
    from vipcli.plugins import plugin_source_files

    package = package_folder(BUILTINS).resolve()
    image = Image.new("RGB", (40, 30), (120, 60, 30))
    for kind, args in [(ToyBackbone, (None, None, "cpu")), (ClipBackbone, (str(tiny_clip), "none", "cpu"))]:
        ran: set[str] = set()
        sys.setprofile(lambda frame, event, arg: ran.add(frame.f_code.co_filename) if event == "call" else None)
        try:
            backbone = kind(*args)
            backbone.describe()
            encode_in_memory(backbone, [image])
            backbone.image_transform(True)(image)
            backbone.encode_text(backbone.tokenize(["a photo of a mole"]))
        finally:
            sys.setprofile(None)
        in_package = {Path(name).resolve() for name in ran if Path(name).resolve().is_relative_to(package)}
        digested = {path.resolve() for path in plugin_source_files(kind)}
        assert in_package and in_package <= digested, (kind.__name__, sorted(map(str, in_package - digested)))
