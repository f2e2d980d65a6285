"""Every command the README and the docs show works (issue 15: "a test runs every command the docs show").

The commands come from the pages themselves (:mod:`doc_commands`: README.md, docs/**/*.md,
benchmarks/**/*.md; code blocks and the prose's `code spans`), so a new page or a new command is
checked without touching this file.

* Every ``edgebot ...`` command is resolved against the real click CLI: its subcommands exist and
  click's own parser accepts every option (a typo'd option or a removed command fails, naming
  FILE:LINE). Every ``data/...`` path it names exists.
* ``make X``: the Makefile has target X. ``.venv/bin/python benchmarks/S.py --opt``: the script
  exists and its ``--help`` lists every option used. ``pip install 'edgebot[X]'``: extra X exists.
* The cheap ones run in a subprocess (cwd, HOME and $STATE_DIRECTORY in a temporary directory),
  the page's placeholders replaced by the repository's data (:func:`_substitute`): ``--help`` and
  ``--version`` forms, ``python -m edgebot --help``, ``bundle info``, ``bundle verify``,
  ``site status|reset``, ``allow``, ``keygen``, ``data summary``, ``eval`` on the bundled IoT-23 44-1
  log, ``prepare`` (the bundled 44-1 log standing in for the IoT-23 files a page downloads), ``run
  --pcap`` on the bundled Mirai pcap (the shipped default bundle) and ``run --check-config`` on the
  example config (its bundle and CA paths pointed at the shipped bundle and a throwaway CA). Each must exit 0 without "Traceback" on stderr.
  ``--help`` also runs for every documented command path that is not run itself.

Only parsed, never run (:func:`_not_run_reason` gives each command's reason, printed by the test):
``train`` (minutes of TensorFlow; the ``tf`` tests and ``make demo`` run it), ``convert`` (needs a
trained run dir), ``bench`` (measures for minutes; ``make bench``), commands that need a signed
bundle (``--trust``), a broker or live traffic (``--mqtt``, the example config's mqtts:// broker,
``--iface``, ``--zeek-log``), an id from a real gateway's state (``allow --incident``, ``allow
--remove``), an absolute path of the page's machine (``/shared/...``: never written to) or still
hold a placeholder (``DATA...``, ``FILE``), bare command names quoted in the prose, a command the
test does not know yet (only its ``--help`` runs), every ``make`` target and benchmark script
(minutes each) and every ``pip install``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from configparser import ConfigParser
from pathlib import Path
from typing import Optional

import pytest

from doc_commands import ROOT, DocCommand, doc_files, documented_commands, inventory, resolve
from edgebot import datasets
from edgebot.cli import main
from edgebot.shipped import DEFAULT_BUNDLE

COMMANDS = documented_commands()
EDGEBOT = [c for c in COMMANDS if c.kind == "edgebot"]
#: The bundled capture a page's pcap placeholder stands for.
PCAP = datasets.pcap("mirai_34_1")
#: A page's bundle paths: the bundle `edgebot convert` would make, the demo's, the gateway's copy.
BUNDLE_WORDS = {"bundles/iot23", "bundles/iot23/", "demo-out/bundle", "/var/lib/edgebot/bundle",
                "BUNDLE", "BUNDLE_DIR", "DIR"}
#: The gateway's config (docs/deploy-raspberry-pi.md copies examples/edgebot.toml there).
CONFIG_WORDS = {"/etc/edgebot/edgebot.toml", "edgebot.toml"}
PCAP_WORDS = {"/var/lib/edgebot/sample.pcap", "capture.pcap"}
#: IoT-23 files a page downloads first (docs/training-at-scale.md): the bundled IoT-23 44-1 log stands in.
DOWNLOADED = re.compile(r"^iot23/.*\*.*conn\.log\.labeled")
#: Commands that run (by command path); any other runs only its --help.
RUN_PATHS = {("prepare",), ("bundle", "info"), ("bundle", "verify"), ("site", "status"), ("site", "reset"), ("allow",),
             ("keygen",), ("data", "summary"), ("eval",), ("run",)}
#: Commands quoted in the prose that are complete as they stand (`edgebot bundle info`).
INLINE_RUN_PATHS = {("prepare",), ("bundle", "info"), ("bundle", "verify"), ("site", "status"), ("allow",)}
COMPLETE_ALONE = {("bundle", "info"), ("site", "status")}
NOT_RUN_PATHS = {
    ("train",): "trains the models (minutes of TensorFlow; the tf tests and make demo run it)",
    ("convert",): "needs a trained run dir (edgebot train)",
    ("bench",): "measures latency and memory for minutes (make bench)",
}
_PLACEHOLDER = re.compile(r"^\[|\]$|^[A-Z][A-Z0-9_]*(\.\.\.)?$|^\.\.\.$|^data\.log$")


def test_inventory() -> None:
    """The pages are read and their commands found; prints how many per page and kind."""
    table = inventory(COMMANDS)
    for page, kinds in sorted(table.items()):
        print(f"{page:32s} " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    print(f"{len(COMMANDS)} commands in {len(doc_files())} pages")
    assert Path(ROOT, "README.md") in doc_files()
    assert table["README.md"].get("edgebot", 0) >= 5, "the README's code blocks hold edgebot commands"
    blocks = [c for c in EDGEBOT if not c.inline]
    assert {c.argv()[1] for c in blocks} >= {"train", "convert", "eval", "run"}, "the main commands were found"


def test_extractor_and_checker_catch_a_broken_page(tmp_path: Path) -> None:
    """A page with a typo'd option, a removed command and a drawing: the typos are found, by line."""
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "new-page.md"
    page.write_text(
        "# A page written later\n\n"
        "```sh\n"
        "$ edgebot run --pcapp capture.pcap     # typo\n"
        "edgebot bundel info\n"
        "edgebot allow 10.0.0.1 \\\n    --reason 'a \\# b'  # joined\n"
        "# edgebot comment --not-a-command\n"
        "make demo\n"
        "```\n\n"
        "```\n   edgebot train ─► run dir     (a drawing)\n```\n\n"
        "Prose quoting `edgebot eval --lern 6h` and `edgebot <gateway_id>`.\n\n"
        "    .venv/bin/edgebot site status --state-dir state\n\n"
        "```console\n$ edgebot --version\nedgebot 0.1.0\n```\n",
        encoding="utf-8")
    found = documented_commands(tmp_path)
    assert [(c.line, c.kind, c.inline) for c in found] == [
        (4, "edgebot", False), (5, "edgebot", False), (6, "edgebot", False), (9, "make", False),
        (18, "edgebot", False), (21, "edgebot", False), (16, "edgebot", True)]
    assert found[2].args() == ["allow", "10.0.0.1", "--reason", "a \\# b"]
    problems = {c.where: resolve(c.args(), main)[1] for c in found if c.kind == "edgebot"}
    assert "no option --pcapp (did you mean --pcap?)" in problems["docs/new-page.md:4"]
    assert "no command 'bundel'" in problems["docs/new-page.md:5"]
    assert "no option --lern" in problems["docs/new-page.md:16"]
    assert problems["docs/new-page.md:6"] is None and problems["docs/new-page.md:18"] is None


def _data_problem(word: str) -> Optional[str]:
    """Why a page's ``data/...`` path names no bundled file, or None."""
    rel = word.split("=", 1)[-1][len("data/"):]
    root = datasets.data_root()
    if any(ch in rel for ch in "*?["):
        return None if list(root.glob(rel)) else f"no bundled file matches {word}"
    return None if (root / rel).exists() else f"{word} does not exist"


@pytest.mark.parametrize("cmd", EDGEBOT, ids=lambda c: f"{c.where}:{' '.join(c.argv()[1:3])}")
def test_edgebot_command_resolves(cmd: DocCommand) -> None:
    """The command path exists and click accepts every option (FILE:LINE in the failure)."""
    path, problem = resolve(cmd.args(), main)
    assert problem is None, f"{cmd.where}: {cmd.text}\n  {problem}"
    args = cmd.args()
    for word, after in zip(args, args[1:] + [""]):
        if word.split("=", 1)[-1].startswith("data/") and after != "...":  # "data/iot23/CTU ...": cut short
            missing = _data_problem(word)
            assert missing is None, f"{cmd.where}: {cmd.text}\n  {missing}"


def _make_targets() -> set[str]:
    targets: set[str] = set()
    for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.\- ]+?)\s*::?(?!=)", line)
        if match and not line.startswith("\t"):
            targets.update(match.group(1).split())
    return targets


def test_make_targets_exist() -> None:
    """``make X`` on a page: the Makefile has target X (none is run: each takes minutes)."""
    targets = _make_targets()
    makes = [c for c in COMMANDS if c.kind == "make"]
    assert makes
    bad = [f"{c.where}: {c.text} (no target {t!r})" for c in makes
           for t in c.args() if "=" not in t and not t.startswith("-") and t not in targets]
    assert not bad, "\n".join(bad)


def test_benchmark_scripts_take_their_documented_options() -> None:
    """``python benchmarks/S.py --opt``: S.py exists and its --help lists --opt (the script is not run)."""
    scripts = [c for c in COMMANDS if c.kind == "script"]
    bad = []
    helps: dict[str, str] = {}
    for c in scripts:
        script, *rest = c.args()
        if not (ROOT / script).is_file():
            bad.append(f"{c.where}: {script} does not exist")
            continue
        options = {w.split("=", 1)[0] for w in rest if w.startswith("--")}
        if not options:
            continue
        if script not in helps:
            done = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True,
                                  text=True, timeout=60)
            assert done.returncode == 0 and "Traceback" not in done.stderr, f"{c.where}: {script} --help\n{done.stderr}"
            helps[script] = done.stdout
        bad += [f"{c.where}: {script} has no option {o}" for o in sorted(options)
                if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", helps[script])]
    assert not bad, "\n".join(bad)


def test_pip_extras_exist() -> None:
    """``pip install 'edgebot[X]'`` on a page: setup.cfg declares extra X."""
    cfg = ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extras = set(cfg["options.extras_require"]) | {"all"}
    bad = [f"{c.where}: no extra {x!r} in setup.cfg" for c in COMMANDS if c.kind == "pip" for w in c.args()
           if w.startswith("edgebot[") for x in w[len("edgebot["):w.index("]")].split(",") if x not in extras]
    assert not bad, "\n".join(bad)


# ------------------------------------------------------------------------------------ running
def _substitute(words: list[str], work: Path) -> tuple[list[str], Optional[str]]:
    """The command with the page's placeholders replaced by the repository's data, or a reason it stays unrun."""
    out: list[str] = []
    for i, word in enumerate(words):
        flag, eq, value = word.partition("=") if word.startswith("--") and "=" in word else ("", "", word)
        before = words[i - 1] if i else ""
        if value in BUNDLE_WORDS:
            value = str(DEFAULT_BUNDLE)
        elif value in CONFIG_WORDS:
            config = _gateway_config(work)
            if config is None:
                return words, "the example config's CA needs the openssl command (not installed)"
            value = str(config)
        elif value in PCAP_WORDS or (value == "FILE" and before == "--pcap"):
            value = str(PCAP)
        elif DOWNLOADED.match(value):
            value = str(datasets.iot23("44-1"))
        elif value.startswith("/"):
            return words, f"names a path of the page's machine ({value})"
        elif value.startswith("data/"):
            matches = sorted(datasets.data_root().glob(value[len("data/"):]))
            if not matches:
                return words, f"{value} does not exist"
            out += [str(m) for m in matches[:-1]]
            value = str(matches[-1])
        elif re.match(r"^\[[^\[\] ]*\]$", value):
            continue  # an optional part of a synopsis ("bundle info [BUNDLE]"): left out
        elif _PLACEHOLDER.match(value) and not value.startswith("-"):
            return words, f"holds the placeholder {value}"
        out.append(f"{flag}{eq}{value}" if eq else value)
    return out, None


def _gateway_config(work: Path) -> Optional[Path]:
    """examples/edgebot.toml as a gateway holds it: the bundle copied in, the broker's CA in /etc/edgebot."""
    from brokers import make_tls_files

    target = work / "etc-edgebot" / "edgebot.toml"
    if not target.exists():
        try:
            ca = make_tls_files(work / "etc-edgebot", "broker").ca_file
        except pytest.skip.Exception:
            return None
        text = (ROOT / "examples" / "edgebot.toml").read_text(encoding="utf-8")
        text = text.replace('"/var/lib/edgebot/bundle"', f'"{DEFAULT_BUNDLE}"')
        text = text.replace('"/etc/edgebot/ca.crt"', f'"{ca}"')
        target.write_text(text, encoding="utf-8")
    return target


def _not_run_reason(cmd: DocCommand, path: list[str]) -> Optional[str]:
    """Why a documented edgebot command is only parsed, or None when the test runs it."""
    args = cmd.args()
    if "--help" in args or "-h" in args or "--version" in args:
        return None
    key = tuple(path[1:])
    if key in NOT_RUN_PATHS:
        return NOT_RUN_PATHS[key]
    if not key:
        return "the program alone"
    if key not in RUN_PATHS:
        return "not one of the commands this test runs (RUN_PATHS): only its --help runs"
    if cmd.inline and (key not in INLINE_RUN_PATHS or (len(args) == len(key) and key not in COMPLETE_ALONE)):
        return "quoted in the prose, not a command line to copy"
    if "--trust" in args:
        return "needs a bundle signed by that key (a trained run converted with --sign)"
    if "--incident" in args or "--remove" in args:
        return "names an incident or rule id of a real gateway's state"
    if key == ("run",):
        if "--mqtt" in args or "--syslog" in args:
            return "publishes to the page's broker or SIEM"
        if "--iface" in args or "--zeek-log" in args:
            return "needs live traffic"
        if "--config" in args and "--check-config" not in args:
            return "the example config publishes to its mqtts:// broker"
        if "--check-config" in args and "--config" not in args:
            return "checks a config the page does not give"
    return None


def _program(cmd: DocCommand) -> list[str]:
    script = Path(sys.executable).with_name("edgebot")
    if cmd.argv()[0].endswith(("python", "python3")) or not script.exists():
        return [sys.executable, "-m", "edgebot"]
    return [str(script)]


def _run(argv: list[str], work: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # about 10 s: some 25 subprocesses (make test runs it, make test-fast does not)
def test_documented_commands_run(tmp_path: Path) -> None:
    """The cheap documented commands exit 0 without a traceback; the others are listed with the reason."""
    work = tmp_path / "clone"
    work.mkdir()
    env = {**os.environ, "HOME": str(tmp_path / "home"), "STATE_DIRECTORY": str(tmp_path / "state"),
           "EDGEBOT_DATA": str(datasets.data_root())}
    (tmp_path / "home").mkdir()
    # The state a gateway has after running (site status needs a site profile): the Mirai replay with
    # the profile kept (a replay keeps none by default).
    site_cfg = tmp_path / "site.toml"
    site_cfg.write_text('[site]\npersist = "yes"\n', encoding="utf-8")
    setup = _run([*_program(EDGEBOT[0]), "run", "--config", str(site_cfg), "--pcap", str(PCAP),
                  "--jsonl", str(tmp_path / "setup.jsonl")], work, env)
    assert setup.returncode == 0, setup.stderr

    plan: list[tuple[list[str], list[str]]] = [([sys.executable, "-m", "edgebot", "--help"], ["(python -m edgebot)"]),
                                               ([*_program(EDGEBOT[0]), "--version"], ["(edgebot --version)"])]
    seen: dict[tuple[str, ...], list[str]] = {}
    parsed_only: list[str] = []
    help_paths: dict[tuple[str, ...], str] = {}
    run_paths: set[tuple[str, ...]] = set()
    for cmd in EDGEBOT:
        path, problem = resolve(cmd.args(), main)
        if problem:
            continue  # test_edgebot_command_resolves names it
        reason = _not_run_reason(cmd, path)
        argv: list[str] = []
        if reason is None:
            argv, reason = _substitute(cmd.args(), work)
        if reason is not None:
            parsed_only.append(f"{cmd.where}: {cmd.text}  -- {reason}")
            if path[1:]:
                help_paths.setdefault(tuple(path[1:]), cmd.where)
            continue
        seen.setdefault(tuple(_program(cmd) + argv), []).append(cmd.where)
        run_paths.add(tuple(path[1:]))
    plan += [(list(argv), wheres) for argv, wheres in seen.items()]
    plan += [([*_program(EDGEBOT[0]), *p, "--help"], [f"(--help of {where})"])
             for p, where in sorted(help_paths.items()) if p not in run_paths]

    failures: list[str] = []
    for argv, wheres in plan:
        done = _run(argv, work, env)
        shown = shlex.join(argv).replace(str(ROOT), "<repo>").replace(str(tmp_path), "<tmp>")
        print(f"ran  {', '.join(wheres)}: {shown} -> exit {done.returncode}")
        if done.returncode != 0 or "Traceback" in done.stderr:
            failures.append(f"{', '.join(wheres)}: {shown}\n  exit {done.returncode}: {done.stderr.strip()[-600:]}")
    for line in parsed_only:
        print(f"parsed only  {line}")
    assert len(plan) >= 10, "the cheap commands were found and run"
    assert not failures, "\n".join(failures)
