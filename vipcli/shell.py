"""Commands vip prints for the user to copy (`next: vip train --data OUT`), quoted for the user's shell.

On POSIX the shells take `shlex.quote`'s single quotes. On Windows neither cmd.exe nor PowerShell does:
there a word holding a space or a character either shell reads (`&`, `;`, `(`, `'` ...) is put in double
quotes, which both take, and its backslashes are left as they are (`"C:\\Users\\Ann Lee\\runs"`), but for
those before a double quote, doubled as Windows' own argument parsing needs (`"D:\\my data\\\\"`).
"""

from __future__ import annotations

import os
import re
import shlex

WINDOWS = os.name == "nt"
# a word either Windows shell takes as it is: no space, nothing cmd.exe or PowerShell gives a meaning
_PLAIN_ON_WINDOWS = re.compile(r"[\w@%+=:./\\-]+")
_BEFORE_QUOTE = re.compile(r'(\\*)("|$)')  # backslashes before a double quote or the end of the word


def quote(word, windows: bool | None = None) -> str:
    """`word` (a path, a name, a number) as one argument of a command line in the user's shell: POSIX
    shells' quoting, or where `windows` (default: whether this is Windows) the one cmd.exe and PowerShell
    both take (see the module's docstring). A plain word stays as it is."""
    word = str(word)
    if not (WINDOWS if windows is None else windows):
        return shlex.quote(word)
    if _PLAIN_ON_WINDOWS.fullmatch(word) and not word.startswith("@"):  # (PowerShell reads @ first)
        return word
    # a double quote inside is \" and the backslashes before it (or before the closing quote) doubled:
    # what Windows programs' argument parsing reads back as the word
    escaped = _BEFORE_QUOTE.sub(lambda m: m.group(1) * 2 + ("\\\"" if m.group(2) else ""), word)
    return f'"{escaped}"'


def command(*words, windows: bool | None = None) -> str:
    """A command line from its `words`, each quoted by `quote` (None left out): `command("vip", "train",
    "--data", path)`."""
    return " ".join(quote(word, windows) for word in words if word is not None)


def set_variable(name: str, value: str, windows: bool | None = None) -> str:
    """How to set the environment variable `name` to `value` in the user's shell, as words for a hint:
    `export NAME=VALUE` on POSIX; on Windows PowerShell's form, then cmd.exe's."""
    if not (WINDOWS if windows is None else windows):
        return f"export {name}={value}"
    return f"$env:{name} = \"{value}\" (PowerShell) or set {name}={value} (cmd.exe)"


WINDOWS_PERMISSIONS = "its Properties, Security tab"  # where Windows shows and changes who may read a file


def permissions_hint(posix: str, windows: bool | None = None) -> str:
    """Where the user sees or changes who may read a file or folder, as words for a hint: the POSIX command
    `posix` (`ls -l`, `chmod -R u+rX`) or, on Windows, which has neither, its Properties, Security tab."""
    return WINDOWS_PERMISSIONS if (WINDOWS if windows is None else windows) else posix


FILETIME_AT_EPOCH = 116_444_736_000_000_000  # Windows' file times count 100 ns from 1601: 1970 in them


def set_modified_time(path, mtime_ns: int, windows: bool | None = None) -> str:
    """The command that sets the modification time of `path` back to `mtime_ns` (ns since 1970), as words for a
    hint: GNU `touch -d @SECONDS.NANOSECONDS PATH`, or on Windows PowerShell's (cmd.exe has none), to its 100 ns."""
    if not (WINDOWS if windows is None else windows):
        seconds, nanoseconds = divmod(mtime_ns, 10**9)
        return f"touch -d @{seconds}.{nanoseconds:09d} {quote(path, False)}"
    ticks = mtime_ns // 100 + FILETIME_AT_EPOCH
    return f"(Get-Item -LiteralPath {quote(path, True)}).LastWriteTimeUtc = [DateTime]::FromFileTimeUtc({ticks}) " \
           "in PowerShell"
