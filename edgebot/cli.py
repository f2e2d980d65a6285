"""All edgebot commands. Each one validates its options, calls one library function, prints a summary.

Heavy packages (TensorFlow for train/convert) are imported inside the command functions,
so ``edgebot run --help`` starts fast on a Raspberry Pi.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import typing
from pathlib import Path
from typing import Callable

import click

from edgebot import __version__
from edgebot.errors import ConfigError, EdgebotError
from edgebot.jsonsafe import plain_or_str

log = logging.getLogger("edgebot")

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100, "show_default": True}


class _State:
    debug = False


class GroupedCommand(click.Command):
    """A command whose ``--help`` lists its options under headings (``option_groups``)."""

    option_groups: dict[str, list[str]] = {}

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        records = {}
        for param in self.get_params(ctx):
            if not isinstance(param, click.Option):
                continue
            rec = param.get_help_record(ctx)
            if rec is not None:
                records[param.name] = rec
        used: set[str] = set()
        for title, names in self.option_groups.items():
            rows = [records[n] for n in names if n in records]
            used.update(names)
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
        rest = [rec for name, rec in records.items() if name not in used]
        if rest:
            with formatter.section("Other options" if self.option_groups else "Options"):
                formatter.write_dl(rest)


def _groups(command: click.Command, groups: dict[str, list[str]]) -> None:
    # click's Group.command(cls=...) is typed as returning a plain Command; every caller made a GroupedCommand
    assert isinstance(command, GroupedCommand)
    command.option_groups = groups


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING
    if verbose == 1:
        level = logging.INFO
    elif verbose >= 2:
        level = logging.DEBUG
    if quiet:
        level = logging.ERROR
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def handle_errors(fn: Callable) -> Callable:
    """Turn edgebot's own errors into ``Error: ...`` and an exit code; ``--debug`` keeps the traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgebotError as exc:
            if _State.debug:
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)

    return wrapper


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=plain_or_str))



@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="edgebot")
@click.option("-v", "--verbose", count=True, show_default=False, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
def main(verbose: int, quiet: bool, debug: bool) -> None:
    """edgebot: detect IoT botnets on the gateway itself.

    \b
    Desktop:  edgebot train  -> edgebot convert  (int8 bundle)
    Gateway:  edgebot run    (pcap | live interface | Zeek log | CSV -> MQTT incidents)
    Anywhere: edgebot eval, edgebot bench, edgebot data summary, edgebot keygen

    Run 'edgebot COMMAND --help' for the options and an example of each command.
    """
    _State.debug = debug
    _configure_logging(verbose, quiet)


# --------------------------------------------------------------------------------------- data
@main.group(context_settings=CONTEXT_SETTINGS, short_help="Inspect labeled flow data.")
def data() -> None:
    """Inspect labeled flow data (Zeek conn logs, IoT-23, CICFlowMeter CSVs)."""


@data.command("summary", context_settings=CONTEXT_SETTINGS, short_help="Rows, labels, families, time span and hosts of flow files.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--strict", is_flag=True, help="Treat any malformed row as an error.")
@handle_errors
def data_summary(paths: tuple[str, ...], as_json: bool, strict: bool) -> None:
    """Rows, skipped rows (with reasons), labels, families, time span and hosts of each file.

    \b
    Example:
      edgebot data summary data/iot23/CTU-IoT-Malware-Capture-34-1.conn.log.labeled.xz
    """
    from edgebot.readers import summarize
    from edgebot.readers.summary import format_summary

    summary = summarize(list(paths), strict=strict)
    if as_json:
        _echo_json(summary)
    else:
        click.echo(format_summary(summary))


# -------------------------------------------------------------------------------------- train
@main.command(cls=GroupedCommand, context_settings=CONTEXT_SETTINGS, short_help="Train the detector and its baselines; write models, metrics and a report.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Run directory to create.")
@click.option("--split", default="temporal",
              help="temporal (per capture: earlier 80% train, later 20% test), stratified "
                   "(the paper's random 80/20; leaky), leave-out:NAME (a scenario or family), or "
                   "leave-device-out[:K] (K trainings, each blind to one fold of the benign devices; "
                   "counts their false incidents; K defaults to 5).")
@click.option("--window", "window", default=8, type=click.IntRange(1, 64), help="Flows per host window (T); CICFlowMeter data has no hosts and uses the feature axis instead.")
@click.option("--epochs", default=None, type=click.IntRange(1, 1000), help="Max epochs (early stopping on validation loss).")
@click.option("--seed", default=0, type=int, help="Seed for every random choice.")
@click.option("--fpr-budget", default=0.01, type=click.FloatRange(0.0, 1.0), help="False-positive budget for the decision threshold (chosen on validation data).")
@click.option("--family", "families", multiple=True, metavar="FILE=NAME", help="Family of the malicious rows of FILE (for data outside the IoT-23 table).")
@click.option("--quick", is_flag=True, help="Small, fast configuration (tests, demo).")
@click.option("--force", is_flag=True, help="Replace an existing run directory.")
@click.option("--dask", "dask", metavar="SCHEDULER", default=None, help="Shard sets: train XGBoost on the Dask cluster at this address (tcp://host:8786).")
@click.option("--dask-workers", default=2, type=click.IntRange(1, 256), help="Shard sets without --dask: workers of the local Dask cluster.")
@handle_errors
def train(paths, out, split, window, epochs, seed, fpr_budget, families, quick, force, dask, dask_workers) -> None:
    """Train the CNN-LSTM, autoencoder, baselines and fuser; write models, metrics and a report.

    The feature profile follows the data: Zeek-style logs (zeek, per-host windows) or
    CICFlowMeter CSVs (cicflowmeter, each flow's features as the sequence).

    \b
    Example:
      edgebot train data/iot23/*.xz --out runs/iot23 --split temporal
      edgebot train data/cicids2017/*.xz --out runs/cic --split stratified
      edgebot train data/iot23/*.xz data/benign_devices/*/*.xz --out runs/ldo --split leave-device-out:5
      edgebot train shards/iot23 --out runs/iot23 --dask-workers 2   (a shard set from edgebot prepare)
    """
    from edgebot import cli_scale

    if cli_scale.is_shard_set(paths):
        from edgebot.train.quiet import quiet_tensorflow

        window_source = click.get_current_context().get_parameter_source("window")
        assert window_source is not None  # None only for a parameter the command does not have
        with quiet_tensorflow(enabled=not _State.debug):
            result = cli_scale.train_from_shards(
                paths, out, dask=dask, dask_workers=dask_workers, split=split,
                window_given=window_source.name != "DEFAULT",
                epochs=epochs, seed=seed, fpr_budget=fpr_budget, quick=quick, force=force)
        click.echo(result["summary"])
        return
    for p in paths:
        if Path(p).is_dir():
            raise click.BadParameter(f"{p} is a directory; give flow files, or one shard set directory alone",
                                     param_hint="PATHS")
    if dask:
        raise click.BadParameter("Dask training reads a shard set: edgebot prepare DATA... --out SHARDS, then "
                                 "edgebot train SHARDS --dask ...", param_hint="--dask")
    fam = _parse_families(families)
    try:
        from edgebot.train.fit import train_run
        from edgebot.train.leave_device_out import leave_device_out, parse_leave_device_out
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise click.ClickException(f"the trainer needs the train extra: pip install 'edgebot[train]' ({exc})") from None
    from edgebot.train.quiet import quiet_tensorflow

    folds = parse_leave_device_out(split)
    with quiet_tensorflow(enabled=not _State.debug):
        if folds is not None:
            result = leave_device_out(list(paths), out, k=folds, window=window, epochs=epochs, seed=seed,
                                      quick=quick, fpr_budget=fpr_budget, families=fam, force=force)
        else:
            result = train_run(list(paths), out, split=split, window=window, epochs=epochs, seed=seed,
                               quick=quick, fpr_budget=fpr_budget, families=fam, force=force,
                               command=command_line())
    summary = result.get("summary") if isinstance(result, dict) else None
    if summary:
        click.echo(summary)


def command_line(argv: list[str] | None = None) -> str:
    """This invocation as ``edgebot ARGS...`` (shell-quoted), paths under the working directory relative."""
    import os
    import shlex

    cwd = os.getcwd()
    args = []
    for arg in sys.argv[1:] if argv is None else argv:
        if os.path.isabs(arg) and os.path.commonpath([cwd, arg]) == cwd:
            arg = os.path.relpath(arg, cwd)
        args.append(shlex.quote(arg))
    return " ".join(["edgebot", *args])


def _parse_families(items) -> dict[str, str]:
    fam = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"expected FILE=NAME, got {item!r}", param_hint="--family")
        k, v = item.split("=", 1)
        fam[k] = v
    return fam


# ------------------------------------------------------------------------------------ convert
@main.command(cls=GroupedCommand, context_settings=CONTEXT_SETTINGS, short_help="Quantize a run to a verified int8 bundle.")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Bundle directory to create.")
@click.option("--max-f1-drop", default=0.005, type=click.FloatRange(0.0, 1.0), help="Fail when int8 fused F1 is this much below float.")
@click.option("--force", is_flag=True, help="Replace an existing bundle directory.")
@click.option("--sign", "sign_key", type=click.Path(dir_okay=False),
              help="Sign the bundle with this ed25519 private key (edgebot keygen); gateways check it with --trust.")
@handle_errors
def convert(run_dir, out, max_f1_drop, force, sign_key) -> None:
    """Quantize the run's networks to int8 TFLite, export the fuser, verify, and write a bundle.

    \b
    Example:
      edgebot convert runs/iot23 --out bundles/iot23
      edgebot convert runs/iot23 --out bundles/iot23 --sign keys/bundles.key
    """
    try:
        from edgebot.convert.bundle_writer import convert_run, format_verification
    except ImportError as exc:  # pragma: no cover
        raise click.ClickException(f"the converter needs the train extra: pip install 'edgebot[train]' ({exc})") from None
    from edgebot.train.quiet import quiet_tensorflow

    with quiet_tensorflow(enabled=not _State.debug):
        result = convert_run(run_dir, out, max_f1_drop=max_f1_drop, force=force, sign_key=sign_key)
    click.echo(format_verification(result))


# ------------------------------------------------------------------------------------- keygen
@main.command(cls=GroupedCommand, context_settings=CONTEXT_SETTINGS, short_help="Make an ed25519 key pair to sign bundles.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Private key file to create (mode 0600); the public key goes to OUT.pub.")
@click.option("--force", is_flag=True, help="Replace existing key files.")
@handle_errors
def keygen(out, force) -> None:
    """Make an ed25519 key pair for bundle signatures (docs/bundle.md, "Signatures").

    Keep the private key on the machine that converts (edgebot convert --sign KEY); copy only
    KEY.pub to the gateways (edgebot run --trust KEY.pub, or trust_key in the config).

    \b
    Example:
      edgebot keygen --out keys/bundles.key
    """
    from edgebot.signing import generate_key

    private_path, public_path, key_id = generate_key(out, force=force)
    click.echo(f"key {key_id}: private key {private_path} (keep it secret), public key {public_path}")


# --------------------------------------------------------------------------------------- eval
@main.command("eval", cls=GroupedCommand, context_settings=CONTEXT_SETTINGS, short_help="Score labeled flows with a bundle and print the metrics.")
@click.argument("args", nargs=-1, required=True, metavar="[BUNDLE_DIR] PATHS...")
@click.option("--bundle", "bundle_opt", type=click.Path(file_okay=False),
              help="Bundle directory (or give it as the first argument). Default: the bundle shipped with edgebot.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--trust", "trust", type=click.Path(dir_okay=False),
              help="Refuse the bundle unless it is signed by this public key (KEY.pub of edgebot keygen).")
@click.option("--learn", "learn", metavar="DURATION", default=None,
              help="Replay the first DURATION of each capture (e.g. 6h, 30m) as the site's learning period.")
@handle_errors
def evaluate(args, bundle_opt, as_json, trust, learn) -> None:
    """Score labeled flows with a bundle (the deployed int8 path) and print the metrics.

    Besides the flow metrics it says what the gateway would do: the incidents its own rule
    raises per host, false incidents per benign device per day and the detection delay of
    every infected host. --learn replays the first part of each capture as the site's
    learning period, as a gateway that was switched on at the capture's start. Without a
    bundle (a first argument that is a directory, or --bundle) it evaluates the default
    bundle shipped with edgebot (edgebot bundle info).

    \b
    Example:
      edgebot eval bundles/iot23 data/iot23/CTU-IoT-Malware-Capture-44-1conn.log.labeled.csv.xz
      edgebot eval data/iot23/CTU-IoT-Malware-Capture-44-1conn.log.labeled.csv.xz   # the shipped bundle
    """
    from pathlib import Path

    args = list(args)
    if bundle_opt is None and args and Path(args[0]).is_dir():
        bundle_opt, args = args[0], args[1:]
    if not args:
        raise click.UsageError("give the labeled flow files to score (PATHS...)")
    for path in args:
        if not Path(path).is_file():
            raise click.BadParameter(f"{path!r} is not a file", param_hint="PATHS")
    if bundle_opt is None:
        from edgebot.shipped import default_bundle

        bundle_opt = str(default_bundle())
        log.info("no bundle given: the default bundle shipped with edgebot (%s)", bundle_opt)
    bundle_dir, paths = bundle_opt, args
    from edgebot.bundle import load_bundle
    from edgebot.evaluate import evaluate_bundle, format_evaluation
    from edgebot.site import parse_duration

    try:
        learn_s = parse_duration(learn) if learn else 0.0
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--learn") from None
    bundle = load_bundle(bundle_dir, trust=trust)
    result = evaluate_bundle(bundle_dir, paths, bundle=bundle, learn_s=learn_s)
    if as_json:
        _echo_json(result)
    else:
        click.echo(format_evaluation(result))


# ---------------------------------------------------------------------------------------- run
class RunCommand(GroupedCommand):
    """``edgebot run``: the flags of the sources and sinks come from the plug-in registries.

    Each plug-in declares its flags in its own file (:class:`edgebot.edge.plugins.Flag`); they are
    added the first time the command parses or shows help, so that the other commands never import
    the edge wing.
    """

    _plugin_flags: list | None = None

    def plugin_flags(self) -> list:
        """The plug-ins' :class:`~edgebot.edge.plugins.Flag` s, adding their options on first use."""
        if self._plugin_flags is None:
            from edgebot.edge.sinks.base import SINKS
            from edgebot.edge.sources.base import SOURCES

            sources = SOURCES.classes()
            where = {f"source.{cls.key()}" for cls in sources}
            locations = [f for f in SOURCES.flags() if f.key in where]
            options = [f for f in SOURCES.flags() if f.key not in where]
            sinks = SINKS.flags()
            taken = {p.name for p in self.params}
            for flag in locations + sinks + options:
                if flag.dest in taken:
                    raise click.ClickException(f"the plug-in flag {flag.name} clashes with another option")
                taken.add(flag.dest)
                kind = {"default": None} if flag.switch else {"type": click.Path() if flag.path else None}
                self.params.insert(len(self.params) - len(_RUN_CONFIG_OPTIONS),
                                   click.Option([flag.name, flag.dest], help=flag.help, **kind))
            self.option_groups = {
                "Model": ["bundle"],
                "Source (exactly one)": [f.dest for f in locations + options],
                "Alerts": [f.dest for f in sinks] + ["gateway_id"],
                "Configuration": list(_RUN_CONFIG_OPTIONS),
            }
            self._plugin_flags = locations + sinks + options
        return self._plugin_flags

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        self.plugin_flags()
        return super().get_params(ctx)


_RUN_CONFIG_OPTIONS = ("config_path", "check_config", "summary_json", "trust")


@main.command(cls=RunCommand, context_settings=CONTEXT_SETTINGS, short_help="Meter traffic, score it, publish incidents (the gateway agent).")
@click.option("--bundle", "bundle", type=click.Path(),
              help="Model bundle directory (or 'bundle' in the config). Neither: the default bundle shipped "
                   "with edgebot (edgebot bundle info).")
@click.option("--gateway-id", "gateway_id", help="Name of this gateway in topics and incidents.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="TOML config (flags override it).")
@click.option("--check-config", is_flag=True, help="Validate the configuration and exit 0 (ok) or 1.")
@click.option("--summary-json", "summary_json", type=click.Path(dir_okay=False), help="Also write the end-of-run summary as JSON here.")
@click.option("--trust", "trust", type=click.Path(dir_okay=False),
              help="Refuse a bundle not signed by this public key (or 'trust_key' in the config).")
@click.pass_context
@handle_errors
def run(ctx: click.Context, bundle, gateway_id, config_path, check_config, summary_json, trust, **plugin_values) -> None:
    """Meter traffic, score flows with the bundle, publish incidents (MQTT and/or JSON lines).

    Exactly one source: --pcap, --iface, --zeek-log or --csv. Without --mqtt, incidents go
    to --jsonl (stdout by default). SIGINT/SIGTERM end the open incidents ('agent stopped'),
    flush for up to 2 s, publish 'offline' and exit 0 (undelivered messages stay queued).
    Refused MQTT credentials or TLS, or a bundle not signed by --trust: exit 2. Without
    --bundle (and no 'bundle' in the config) it runs the default bundle shipped with edgebot
    and says so when it starts.

    \b
    Example:
      edgebot run --pcap capture.pcap                # the shipped default bundle
      edgebot run --bundle bundles/iot23 --pcap capture.pcap --mqtt mqtt://localhost:1883
    """
    from edgebot.edge.config import check_config as _check, load_config

    overrides = {"bundle": bundle, "gateway_id": gateway_id, "trust_key": trust}
    command = typing.cast(RunCommand, ctx.command)
    overrides.update({flag.key: plugin_values[flag.dest] for flag in command.plugin_flags()})
    overrides = {k: v for k, v in overrides.items() if v is not None}
    summary_problem = _summary_json_problem(summary_json)
    if check_config:
        problems = _check(config_path, overrides)
        if summary_problem:
            problems.append(summary_problem)
        if problems:
            for p in problems:
                click.echo(f"Error: {p}", err=True)
            sys.exit(1)
        click.echo("configuration ok")
        return
    cfg = load_config(config_path, overrides).validate()
    if summary_problem:  # checked before the run, not after hours of it
        raise ConfigError(summary_problem)
    from edgebot.edge.agent import run_agent
    from edgebot.shipped import is_default

    if cfg.bundle is not None and is_default(cfg.bundle):
        click.echo(f"edgebot {__version__}: no --bundle given, running the default bundle shipped with edgebot "
                   "(edgebot bundle info)", err=True)
    summary = run_agent(cfg)
    click.echo(summary.format(), err=True)
    if summary_json:
        _write_summary_json(summary_json, summary.to_dict())


def _summary_json_problem(path: str | None) -> str | None:
    """Why ``--summary-json PATH`` could not be written at the end of the run, or None."""
    if not path:
        return None
    from pathlib import Path

    from edgebot.statefiles import writable_file_problem

    import os

    target = Path(path)
    why = writable_file_problem(target, create_dirs=False)
    if why is None and not os.access(target.parent, os.W_OK | os.X_OK):  # the atomic write makes a sibling
        why = f"{target.parent} is not writable by this user"
    return f"--summary-json: {why}" if why else None


def _write_summary_json(path: str, summary: dict) -> None:
    """Write the summary atomically (a reader never sees half of it)."""
    from pathlib import Path

    from edgebot.statefiles import atomic_write

    text = json.dumps(summary, indent=2, sort_keys=True, default=plain_or_str) + "\n"
    try:
        atomic_write(Path(path), text.encode("utf-8"), mode=0o644)
    except OSError as exc:
        raise ConfigError(f"--summary-json: cannot write {path}: {exc.strerror or exc} "
                          "(the summary is printed above)") from None


# -------------------------------------------------------------------------------------- bench
@main.command(cls=GroupedCommand, context_settings=CONTEXT_SETTINGS, short_help="Measure latency, throughput, memory and start-up.")
@click.argument("bundle_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--pcap", type=click.Path(exists=True, dir_okay=False), help="Also measure end-to-end replay of this pcap.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write all figures as JSON here.")
@click.option("--batch", "batches", default="1,32,256", help="Comma-separated batch sizes.")
@click.option("--repeat", default=200, type=click.IntRange(1, 100000), help="Calls per measurement.")
@click.option("--run-dir", "run_dir", type=click.Path(exists=True, file_okay=False),
              help="Run dir with the bundle's Keras models (default: BUNDLE_DIR/../run or BUNDLE_DIR without '-bundle').")
@handle_errors
def bench(bundle_dir, pcap, json_path, batches, repeat, run_dir) -> None:
    """Measure latency, throughput, memory and start-up of the gateway path (and Keras, if installed).

    \b
    Example:
      edgebot bench bundles/iot23 --pcap capture.pcap --json bench.json
    """
    from edgebot.edge.bench import format_bench, run_bench

    try:
        batch_sizes = [int(b) for b in batches.split(",") if b.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {batches!r}", param_hint="--batch") from None
    if not batch_sizes or min(batch_sizes) < 1:
        raise click.BadParameter(f"batch sizes must be positive, got {batches!r}", param_hint="--batch")
    result = run_bench(bundle_dir, pcap=pcap, batch_sizes=batch_sizes, repeat=repeat, run_dir=run_dir)
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(result, fh, indent=2, sort_keys=True, default=plain_or_str)
    click.echo(format_bench(result))


_groups(train, {
    "Output": ["out", "force"],
    "Evaluation protocol": ["split", "families", "fpr_budget"],
    "Model and training": ["window", "epochs", "seed", "quick"],
})
_groups(bench, {
    "What to measure": ["pcap", "batches", "repeat", "run_dir"],
    "Output": ["json_path"],
})
_groups(convert, {"Output": ["out", "force", "sign_key"], "Verification": ["max_f1_drop"]})


from edgebot import cli_site as _cli_site  # noqa: E402  (the operator's state commands: site, allow)
from edgebot import cli_bundle as _cli_bundle  # noqa: E402  (bundle info, bundle verify)

_cli_site.register(main, handle_errors, CONTEXT_SETTINGS, _echo_json)
_cli_bundle.register(main, handle_errors, CONTEXT_SETTINGS, _echo_json)
from edgebot import cli_scale as _cli_scale  # noqa: E402  (edgebot prepare; train SHARDS/)

_cli_scale.register(main, handle_errors, CONTEXT_SETTINGS)


if __name__ == "__main__":  # pragma: no cover
    main()
