"""Read the JSON inside an LLM answer the way models write it.

Models asked for a list often answer in JSON that `json.loads` refuses, or wrap it in prose:

    a preamble or a closing note    Sure! Here it is:  ```json [...] ```  Let me know ...
    several fenced blocks           ```json [...] ``` ... ```json [...] ```
    trailing commas                 ["a", "b",]
    comments                        ["a", // the edges
    Python literals                 ['a', 'b'] or {'features': [...]}

`json_documents(text)` returns what every such block holds (nothing when none parses), so a list in
JSON is never read line by line as text (which gave symptoms such as `["Irregular borders`).
"""

from __future__ import annotations

import ast
import json
import re

STRING = re.compile(r'("(?:[^"\\]|\\.)*")')  # a JSON string literal, as one split group
FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)  # ```json ... ``` blocks


def json_documents(text: str) -> list:
    """The JSON documents of an answer: each fenced block that parses, else the answer itself (fences
    left out), else its part from the first "[" or "{" to the last "]" or "}".

    Args:
        text: the assistant message, reasoning already left out.

    Returns:
        The parsed documents (lists, objects or strings), in order; [] when the answer holds no JSON.
    """
    blocks = [match.group(1) for match in FENCE.finditer(text)]
    documents = [doc for doc in map(loads_leniently, blocks) if doc is not None]
    if documents:
        return documents
    unfenced = "\n".join(line for line in text.splitlines() if not line.strip().startswith("```"))
    for body in (unfenced, _bracketed(unfenced)):
        document = loads_leniently(body)
        if document is not None:
            return [document]
    return []


def _bracketed(text: str) -> str:
    """From the first "[" or "{" of `text` to its last "]" or "}" ("" if none): a list after "Here it is:"."""
    first = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    last = max(text.rfind("]"), text.rfind("}"))
    return text[first : last + 1] if 0 <= first < last else ""


def loads_leniently(body: str):
    """`body` as a JSON list, object or string: as written, then without comments and trailing commas,
    then as a Python literal (single quotes); None when it is none of these."""
    body = body.strip()
    if not body or body[0] not in "[{\"'":
        return None
    for attempt in (body, _without_comments_and_trailing_commas(body)):
        try:
            return json.loads(attempt)
        except (ValueError, RecursionError):
            pass
    try:
        document = ast.literal_eval(body)
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
        return None
    return document if isinstance(document, (list, dict, str, tuple)) else None


def _without_comments_and_trailing_commas(body: str) -> str:
    """`body` without // and /* */ comments and the commas right before a closing bracket (outside strings)."""
    out: list[str] = []
    i, in_string = 0, False
    while i < len(body):
        char = body[i]
        if in_string:
            out.append(char)
            if char == "\\" and i + 1 < len(body):
                out.append(body[i + 1])
                i += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            out.append(char)
        elif body.startswith("//", i):
            i = body.find("\n", i)
            i = len(body) if i < 0 else i
            continue
        elif body.startswith("/*", i):
            end = body.find("*/", i + 2)
            i = len(body) if end < 0 else end + 2
            continue
        else:
            out.append(char)
        i += 1
    parts = STRING.split("".join(out))  # the strings at odd positions: their commas stay
    return "".join(part if index % 2 else re.sub(r",(\s*[\]}])", r"\1", part) for index, part in enumerate(parts))
