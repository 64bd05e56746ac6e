"""Shell completion of option values: what `--backbone`, `--method`, `--methods`, `--device`, `--schedule`,
`--image-fit`, `--judge` and the ID and NAME arguments take (`vip symptoms show NAME`: the shipped packs), offered at a Tab press.
`--symptoms` completes file names only: a shipped pack offered there would hide a file of the same beginning.

Each function is a typer `autocompletion`: given the part of the value typed so far, it returns the
values that begin with it. They read only entry points and the shipped packs, never torch: a Tab
press answers at once. A value with nothing to offer (a path) returns no candidates, and the shell
completes file names instead (`complete -o default`).
"""

from __future__ import annotations

METHOD_GROUP = "vip.methods"  # vipcli.methods.ENTRY_POINT_GROUP, repeated: importing vipcli.methods imports torch


def starting_with(incomplete: str, values) -> list[str]:
    """The `values` that begin with `incomplete`, ignoring case, in their order."""
    typed = incomplete.lower()
    return [value for value in values if value.lower().startswith(typed)]


def backbones(incomplete: str) -> list[str]:
    """The installed backbone ids that begin with `incomplete`."""
    from vipcli.registry import BACKBONES

    return starting_with(incomplete, BACKBONES.ids())


def _method_ids() -> list[str]:
    from vipcli.plugins import PluginGroup

    return PluginGroup(METHOD_GROUP, "method").ids()


def methods(incomplete: str) -> list[str]:
    """The installed method ids that begin with `incomplete`."""
    return starting_with(incomplete, _method_ids())


def method_list(incomplete: str) -> list[str]:
    """`--methods`: the method ids (or `all`) that complete the last item of a comma-separated list,
    each with the items before it (`vip,co` -> `vip,coop`); ids already listed are not offered again."""
    before, comma, last = incomplete.rpartition(",")
    listed = set(before.split(",")) if comma else set()
    ids = [method for method in _method_ids() if method not in listed] + ([] if comma else ["all"])
    return [before + comma + method for method in starting_with(last, ids)]


def devices(incomplete: str) -> list[str]:
    """The `--device` names that begin with `incomplete` (`cuda:N` is typed whole)."""
    from vipcli.devices import DEVICE_CHOICES

    return starting_with(incomplete, DEVICE_CHOICES)


def schedules(incomplete: str) -> list[str]:
    """The `--schedule` names that begin with `incomplete`."""
    from vipcli.schedule import PRESETS

    return starting_with(incomplete, ["auto", *sorted(PRESETS)])


def image_fits(incomplete: str) -> list[str]:
    """The `--image-fit` names that begin with `incomplete`."""
    from vipcli.image_fit import FITS

    return starting_with(incomplete, FITS)


def judges(incomplete: str) -> list[str]:
    """The `--judge` names that begin with `incomplete`."""
    from vipcli.symptoms.generate import JUDGES

    return starting_with(incomplete, JUDGES)


def packs(incomplete: str) -> list[str]:
    """The shipped symptom packs whose name begins with `incomplete`, spaces written as `-` (one word for
    the shell; packs are matched ignoring `-`, `_` and spaces); none when a path is being typed."""
    if "/" in incomplete or incomplete.startswith("."):
        return []
    from vipcli.packs import shipped_packs

    return starting_with(incomplete, [pack.name.replace(" ", "-") for pack in shipped_packs()])
