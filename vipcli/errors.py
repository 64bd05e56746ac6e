"""Errors a user can act on. Each becomes one line (plus a hint) at the CLI boundary."""

from __future__ import annotations


class VipError(Exception):
    """A failure with a cause the user can fix.

    Args:
        message: what went wrong, naming the thing (file, class, option) involved.
        hint: what to do about it, shown after the message.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, own_process: bool = False, whole_job: bool = False,
                 failed_wait: tuple[str, tuple[int, ...]] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.own_process = own_process  # under torchrun: true of this process only, so it always says it
        self.whole_job = whole_job  # under torchrun: about every rank's work (rank 0's merged --out): no rank named
        # under torchrun: (the wait, the ranks waited for) of a wait that failed, which every waiting rank of the node
        # fails alike: one of them says it (`node_ranks.say_once_per_node`)
        self.failed_wait = failed_wait

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(VipError):
    """The command line itself is wrong (bad option value, unknown name)."""

    exit_code = 2


class ImageError(VipError):
    """One image file cannot be used; `reason` says why in a few words."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
