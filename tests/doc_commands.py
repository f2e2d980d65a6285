"""The shell commands the README and the docs show, found in their code blocks (tests/core/test_documented_commands.py).

:func:`documented_commands` reads ``README.md``, ``docs/**/*.md`` and ``benchmarks/**/*.md`` (a new
page is picked up without touching the test) and returns every command a user would copy from a
fenced (```sh, bash, console, shell or no language) or an indented code block: lines starting with
``edgebot``, ``.venv/bin/edgebot``, ``python -m edgebot``, ``make``, ``.venv/bin/python benchmarks/...``
or ``pip install``. A ``$ `` prompt is stripped, ``\\`` continuations are joined, comment lines are
skipped and a trailing ``# comment`` is dropped (with shell quoting respected).

:func:`resolve` walks an ``edgebot`` command through the real click tree
(:data:`edgebot.cli.main`): every subcommand must exist and every option must be one of that
command's, parsed by click itself (``make_context(..., resilient_parsing=True)``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import click

ROOT = Path(__file__).resolve().parents[1]
#: The pages users follow, as globs relative to the repository root.
DOC_GLOBS = ("README.md", "docs/**/*.md", "benchmarks/**/*.md")
#: Fence languages whose lines are shell commands (an empty string: a fence without a language).
SHELL_LANGS = {"", "sh", "bash", "console", "shell", "shell-session", "text"}
#: Fences of a terminal session: only the ``$ `` lines (and their continuations) are commands.
SESSION_LANGS = {"console", "shell-session"}
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")


@dataclass(frozen=True)
class DocCommand:
    """One documented command: where it is, its text (continuations joined, comment dropped), its kind."""

    file: str  # relative to the repository root
    line: int  # 1-based line of its first physical line
    text: str
    kind: str  # edgebot | make | script | pip
    inline: bool = False  # from a `code span` in the prose rather than a code block

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def argv(self) -> list[str]:
        """The words of the command (shell quoting applied, a leading ``sudo``/``nice``/``VAR=x`` dropped)."""
        return _unsudo(shlex.split(self.text, comments=True))

    def args(self) -> list[str]:
        """What follows the program: edgebot's arguments, the script's path and arguments, make's targets..."""
        words = self.argv()
        if words[0].endswith("python") or words[0].endswith("python3"):
            return words[3:] if words[1] == "-m" else words[1:]
        return words[2:] if self.kind == "pip" else words[1:]


def doc_files(root: Path = ROOT) -> list[Path]:
    """Every page users follow, sorted (new pages are found by the globs)."""
    found: set[Path] = set()
    for pattern in DOC_GLOBS:
        found.update(p for p in root.glob(pattern) if p.is_file())
    return sorted(found)


def _code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line inside a shell-like fenced block or an indented block.

    The block's own indentation is removed: a line still indented is a continuation or a drawing.
    """
    out: list[tuple[int, str]] = []
    lines = text.splitlines()
    fence: Optional[str] = None
    indent = 0
    shell = session = False
    previous_blank = True
    in_list = False
    for number, line in enumerate(lines, 1):
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            elif shell:
                code = line.strip() if line[:indent].strip() else line[indent:].rstrip()
                continued = bool(out) and out[-1][0] == number - 1 and out[-1][1].endswith("\\")
                if not session or code.startswith("$ ") or continued:  # a session's other lines are output
                    out.append((number, code))
            continue
        match = _FENCE.match(line)
        if match:
            indent, fence = len(match.group(1)), match.group(2)
            shell = match.group(3).lower() in SHELL_LANGS
            session = match.group(3).lower() in SESSION_LANGS
            continue
        stripped = line.strip()
        if re.match(r"^\s*([-*+]|\d+[.)])\s", line):
            in_list = True
        elif not stripped:
            pass
        elif not line.startswith((" ", "\t")):
            in_list = False
        # An indented code block: 4+ spaces (or a tab) after a blank line or another code line, outside a list.
        if (line.startswith(("    ", "\t")) and stripped and not in_list
                and (previous_blank or (out and out[-1][0] == number - 1))):
            out.append((number, line[1:].rstrip() if line.startswith("\t") else line[4:].rstrip()))
            previous_blank = False
            continue
        previous_blank = not stripped
    return out


def _unsudo(words: list[str]) -> list[str]:
    """The command without what runs it: ``sudo [-u USER]``, ``nice [-n N]``, ``time``, ``VAR=value``."""
    while words:
        if words[0] in ("sudo", "nice"):
            words = words[1:]
            if words[:1] in (["-u"], ["-n"]):
                words = words[2:]
        elif words[0] == "time" or re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            words = words[1:]
        else:
            break
    return words


def _program(word: str, name: str) -> bool:
    """``word`` runs ``name``: the bare name or any path to it (.venv/bin/NAME, /opt/.../bin/NAME)."""
    return word == name or word.endswith("/bin/" + name)


def _kind(text: str) -> Optional[str]:
    """edgebot | make | script | pip, or None when the line is not one of the commands this test knows."""
    try:
        words = _unsudo(shlex.split(text, comments=True))
    except ValueError:
        return None
    if not words:
        return None
    first = words[0]
    if _program(first, "edgebot"):
        return "edgebot"
    if first == "make":
        return "make"
    if (_program(first, "pip") or _program(first, "pip3")) and words[1:2] == ["install"]:
        return "pip"
    if _program(first, "python") or _program(first, "python3"):
        if words[1:3] in (["-m", "edgebot"], ["-m", "edgebot.cli"]):
            return "edgebot"
        if len(words) > 1 and words[1].startswith("benchmarks/"):
            return "script"
    return None


def _drop_comment(text: str) -> str:
    """The command without a trailing shell comment (a '#' outside quotes after a blank)."""
    quote: Optional[str] = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip()
    return text.rstrip()


def commands_in(path: Path, root: Path = ROOT) -> list[DocCommand]:
    """The documented commands of one page, in order."""
    rel = path.relative_to(root).as_posix()
    found: list[DocCommand] = []
    pending: Optional[tuple[int, str]] = None
    for number, line in _code_lines(path.read_text(encoding="utf-8")):
        if pending is not None:
            start, text = pending
            text = f"{text} {_drop_comment(line.strip())}"
            if text.endswith("\\"):
                pending = (start, text[:-1].rstrip())
                continue
            pending = None
            kind = _kind(text)
            if kind:
                found.append(DocCommand(rel, start, text, kind))
            continue
        if line.startswith("$ "):
            line = line[2:].lstrip()
        if line[:1].isspace() and line.strip().startswith("[") and found and found[-1].line == number - 1:
            last = found.pop()  # a synopsis wrapped onto the next line ("    [--epochs N] [--seed 0]")
            found.append(DocCommand(rel, last.line, f"{last.text} {line.strip()}", last.kind))
            continue
        if not line or line.startswith("#") or line[0].isspace():
            continue  # blank, a comment, or an indented line of a drawing (a diagram's "edgebot train ─►")
        text = _drop_comment(line)
        if text.endswith("\\"):
            pending = (number, text[:-1].rstrip())
            continue
        kind = _kind(text)
        if kind:
            found.append(DocCommand(rel, number, text, kind))
    return found


_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_WORD = re.compile(r"^(-{1,2}[a-z][\w-]*|[a-z][\w-]*)$")


def inline_commands_in(path: Path, root: Path = ROOT) -> list[DocCommand]:
    """The commands quoted in the prose (`edgebot bundle info`, `make bench`): outside code blocks."""
    rel = path.relative_to(root).as_posix()
    found: list[DocCommand] = []
    fence: Optional[str] = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            continue
        match = _FENCE.match(line)
        if match:
            fence = match.group(2)
            continue
        if line.startswith(("    ", "\t")):
            continue
        for span in _SPAN.findall(line):
            text = span.strip()
            if text.startswith("$ "):
                text = text[2:]
            kind = _kind(text)
            if kind is None:
                continue
            words = _unsudo(shlex.split(text, comments=True))
            if kind in ("edgebot", "make") and (len(words) < 2 or not _WORD.match(words[1])):
                continue  # the program's name alone, or prose ("edgebot <gateway_id>", "edgebot = core")
            found.append(DocCommand(rel, number, _drop_comment(text), kind, inline=True))
    return found


def documented_commands(root: Path = ROOT, *, inline: bool = True) -> list[DocCommand]:
    """Every documented command of every page: code blocks, then (``inline``) the prose's code spans."""
    blocks = [c for path in doc_files(root) for c in commands_in(path, root)]
    spans = [c for path in doc_files(root) for c in inline_commands_in(path, root)] if inline else []
    return blocks + spans


def inventory(commands: list[DocCommand]) -> dict[str, dict[str, int]]:
    """Per page, how many commands of each kind (inline code spans counted as KIND-inline)."""
    table: dict[str, dict[str, int]] = {}
    for c in commands:
        row = table.setdefault(c.file, {})
        key = f"{c.kind}-inline" if c.inline else c.kind
        row[key] = row.get(key, 0) + 1
    return table


# ------------------------------------------------------------------------------- the click tree
def _option_names(command: click.Command, ctx: click.Context) -> dict[str, click.Parameter]:
    names: dict[str, click.Parameter] = {}
    for param in command.get_params(ctx):
        if isinstance(param, click.Option):
            for name in param.opts + param.secondary_opts:
                names[name] = param
    return names


def _option(word: str, names: dict[str, click.Parameter], path: list[str]) -> tuple[Optional[click.Parameter], Optional[str]]:
    """The parameter an option word names (None for -vv), or why the command has no such option."""
    name = word.split("=", 1)[0]
    if name not in names and re.match(r"^-[A-Za-z]{2,}$", name):  # -vv: short flags together
        unknown = [f"-{ch}" for ch in name[1:] if f"-{ch}" not in names]
        if not unknown:
            return None, None
        name = unknown[0]
    if name not in names:
        return None, f"'{' '.join(path)}' has no option {name}{_suggest(name, names)}"
    return names[name], None


def _takes_value(param: Optional[click.Parameter], word: str) -> bool:
    """The next word is this option's value."""
    if param is None or "=" in word:
        return False
    return not (getattr(param, "is_flag", False) or getattr(param, "count", False))


def _suggest(name: str, names: dict) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def resolve(args: list[str], main: click.Group, prog: str = "edgebot") -> tuple[list[str], Optional[str]]:
    """Walk ``args`` through the click tree: (the command path, None) or (the path so far, why it fails).

    Synopsis lines (``[--split A|B]``, ``DATA...``) are checked by their option names only.
    """
    path = [prog]
    command: click.Command = main
    ctx = click.Context(main, info_name=prog, resilient_parsing=True)
    rest = list(args)
    synopsis = any(w.startswith("[") or w.endswith("]") or "|" in w for w in rest)
    while isinstance(command, click.Group):
        names = _option_names(command, ctx)
        while rest and rest[0].startswith("-"):
            word = rest.pop(0)
            param, why = _option(word, names, path)
            if why:
                return path, why
            if _takes_value(param, word) and rest:
                rest.pop(0)
        if not rest:
            return path, None  # a group alone (its help)
        name = rest.pop(0)
        sub = command.get_command(ctx, name)
        if sub is None:
            known = ", ".join(sorted(command.list_commands(ctx)))
            return path, f"'{' '.join(path)}' has no command '{name}' (it has: {known})"
        path.append(name)
        command = sub
        ctx = click.Context(sub, info_name=name, parent=ctx, resilient_parsing=True)
    names = _option_names(command, ctx)
    if synopsis:
        for word in rest:
            for name in re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", word):
                if name not in names:
                    return path, f"'{' '.join(path)}' has no option {name}{_suggest(name, names)}"
        return path, None
    # click's resilient parsing lets an unknown option through: every option word is checked here.
    words = iter(rest)
    for word in words:
        if word == "--":
            break
        if not word.startswith("-") or word == "-" or re.match(r"^-\d", word):
            continue
        param, why = _option(word, names, path)
        if why:
            return path, why
        if _takes_value(param, word):
            next(words, None)
    try:
        command.make_context(path[-1], rest, parent=ctx.parent, resilient_parsing=True)
    except click.UsageError as exc:
        return path, f"'{' '.join(path)}': {exc.format_message()}"
    return path, None
