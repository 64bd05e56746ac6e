"""Shell completion (`vip --show-completion bash`): commands, options and the values options take."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vipcli.cli import completion


def _complete(monkeypatch, capsys, line: str) -> list[str]:
    """What bash's completion function gets for `line` (the last word is being completed), as the
    `vip` script answers it: through `main`, whose typer reads the completion variables."""
    from vipcli.cli.main import main

    words = line.split(" ")
    monkeypatch.setenv("_VIP_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", line)
    monkeypatch.setenv("COMP_CWORD", str(len(words) - 1))
    with pytest.raises(SystemExit) as done:
        main([])
    assert done.value.code == 0
    return capsys.readouterr().out.split()


@pytest.mark.parametrize("line, expected", [
    ("vip tr", ["train"]),
    ("vip train --backbone ", ["biomedclip", "clip", "hf-clip", "siglip", "toy"]),
    ("vip train --backbone c", ["clip"]),
    ("vip train --method vip-", ["vip-cop-only", "vip-mep-only"]),
    ("vip train --device c", ["cpu", "cuda"]),
    ("vip train --schedule ", ["auto", "fewshot", "paper"]),
    ("vip benchmark --methods vip,tip", ["vip,tip-adapter", "vip,tip-adapter-f"]),
    ("vip benchmark --methods a", ["all"]),
    ("vip benchmark --methods vip,v", ["vip,vip-cop-only", "vip,vip-mep-only"]),  # vip is listed already
    ("vip predict --backbone t", ["toy"]),
    ("vip report run --device m", ["mps"]),
    ("vip methods show tip-adapter", ["tip-adapter", "tip-adapter-f"]),
    ("vip methods check zero", ["zeroshot"]),
    ("vip backbones check hf", ["hf-clip"]),
    ("vip backbones check --device a", ["auto"]),
    ("vip symptoms rank --device cu", ["cuda"]),
    ("vip symptoms show basal", ["basal-cell-carcinoma"]),
    ("vip symptoms show COVID", ["COVID-19-pneumonia"]),
    ("vip symptoms show packs/", []),  # a path: the shell completes file names
    ("vip symptoms generate --judge ", ["overlap", "llm"]),
    ("vip cache clear --backbone to", ["toy"]),
    ("vip train --data ", []),  # a folder: the shell completes file names
])
def test_option_values_complete_with_what_the_option_takes(monkeypatch, capsys, line, expected):
    """`vip train --backbone <Tab>` offered nothing: every id had to be looked up in `vip backbones list`."""
    assert _complete(monkeypatch, capsys, line) == expected


def test_a_completed_pack_name_is_the_pack_it_names(cli):
    """A pack is offered as one word (`basal-cell-carcinoma`): `vip symptoms show` takes it as the pack."""
    code, out, err = cli("symptoms", "show", completion.packs("basal")[0])
    assert code == 0 and out.startswith("basal cell carcinoma"), err


def test_the_method_ids_are_those_of_the_methods_registry():
    from vipcli.methods import METHODS

    assert completion.METHOD_GROUP == METHODS.group and completion.methods("") == METHODS.ids()


def test_completion_answers_without_importing_torch(tmp_path):
    """A Tab press must answer at once: importing torch would take seconds."""
    script = ("import sys\nfrom vipcli.cli.main import main\ntry:\n    main([])\nexcept SystemExit:\n    pass\n"
              "print('torch' in sys.modules)")
    env = {"_VIP_COMPLETE": "complete_bash", "COMP_WORDS": "vip benchmark --methods co", "COMP_CWORD": "3",
           "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout.split() == ["coop", "False"], done.stderr
