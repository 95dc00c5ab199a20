"""The shell commands of the docs' ```bash blocks, one argv per command, as a shell would run them.

Backslash continuations are joined, `# comments` dropped, `&&` / `;` chains split, `for v in a b; do ...;
done` unrolled, `NAME=value` assignments substituted into later `$NAME`s of the same file, and
`[optional args]` kept apart from the command's own arguments.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FOR_LOOP = re.compile(r"^for (\w+) in ([^;]+); do (.+?);? done$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")


@dataclasses.dataclass(frozen=True)
class Command:
    doc: str  # path relative to the repository root
    line: int  # first line of the command in the doc
    argv: tuple[str, ...]
    optional: tuple[str, ...]  # the arguments written in [brackets]

    def __str__(self) -> str:
        optional = f" [{' '.join(self.optional)}]" if self.optional else ""
        return f"{self.doc}:{self.line}: {shlex.join(self.argv)}{optional}"


def documented_files() -> list[str]:
    """README.md and every docs/*.md, relative to the repository root."""
    docs = sorted(f"docs/{name}" for name in os.listdir(os.path.join(ROOT, "docs")) if name.endswith(".md"))
    return ["README.md", *docs]


def bash_blocks(text: str) -> list[tuple[int, list[str]]]:
    """(line number of the block's first line, its lines) for every ```bash block of a markdown text."""
    blocks, current, start = [], None, 0
    for number, line in enumerate(text.splitlines(), 1):
        if current is None and line.strip() == "```bash":
            current, start = [], number + 1
        elif current is not None and line.strip() == "```":
            blocks.append((start, current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def _logical_lines(start: int, lines: list[str]) -> list[tuple[int, str]]:
    """Lines with their backslash continuations joined, each with its first line's number."""
    joined, pending, first = [], "", start
    for number, line in enumerate(lines, start):
        if not pending:
            first = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
        else:
            joined.append((first, pending + line))
            pending = ""
    return joined


def _tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    return list(lexer)


def _split_chain(tokens: list[str]) -> list[list[str]]:
    parts, current = [], []
    for token in tokens:
        if token in ("&&", ";"):
            parts.append(current)
            current = []
        else:
            current.append(token)
    return [p for p in [*parts, current] if p]


def _optional_apart(tokens: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(arguments, [optional] arguments): `[a b]` may span tokens."""
    argv, optional, inside = [], [], False
    for token in tokens:
        if token.startswith("["):
            inside, token = True, token[1:]
        closing = inside and token.endswith("]")
        if closing:
            token = token[:-1]
        (optional if inside else argv).append(token)
        inside = inside and not closing
    return tuple(argv), tuple(t for t in optional if t)


def _substitute(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), text)


def commands_of(doc: str) -> list[Command]:
    """Every command of the doc's ```bash blocks, in document order."""
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        text = f.read()
    variables: dict[str, str] = {}
    found = []
    for start, lines in bash_blocks(text):
        for number, line in _logical_lines(start, lines):
            loop = _FOR_LOOP.match(line.strip())
            if loop:
                name, values, body = loop.groups()
                bodies = [_substitute(body, {name: value}) for value in values.split()]
            else:
                bodies = [line]
            for body in bodies:
                for tokens in _split_chain(_tokens(_substitute(body, variables))):
                    if len(tokens) == 1 and _ASSIGNMENT.match(tokens[0]):
                        name, _, value = tokens[0].partition("=")
                        variables[name] = value
                        continue
                    argv, optional = _optional_apart(tokens)
                    found.append(Command(doc, number, argv, optional))
    return found
