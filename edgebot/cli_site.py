"""The operator's commands on a gateway's state: ``edgebot site status|reset`` and ``edgebot allow``.

They act on the state dir (``--state-dir``, else ``state_dir`` of ``--config``, else the default)
and work whether or not an agent is running: a running agent re-reads the allow rules and picks
up reset requests within a second, without a restart.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import click

from edgebot.errors import ConfigError

STATE_OPTIONS = [
    click.option("--state-dir", "state_dir", type=click.Path(file_okay=False),
                 help="The agent's state dir (default: state_dir of --config, $STATE_DIRECTORY or ~/.local/state/edgebot)."),
    click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
                 help="The agent's TOML config (for its state_dir)."),
]


def _state_options(fn):
    for opt in reversed(STATE_OPTIONS):
        fn = opt(fn)
    return fn


def resolve_state_dir(state_dir: Optional[str], config_path: Optional[str]) -> Path:
    """The state dir the operator means (flag, config file, default)."""
    if state_dir:
        return Path(state_dir)
    from edgebot.edge.config import default_state_dir, load_config

    if config_path:
        return load_config(config_path).state_path()
    return default_state_dir()


def _iso(ts: Optional[float]) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + "Z"


def upgrade_note(profile_bundle: Optional[str]) -> str:
    """What happens to this profile with another bundle, and whether it was learned with the shipped default."""
    from edgebot.shipped import DEFAULT_BUNDLE

    try:
        from edgebot.bundle import load_manifest

        shipped = load_manifest(DEFAULT_BUNDLE).bundle_id[:12]
    except Exception:  # noqa: BLE001 - no or a broken shipped bundle: say so, the status still prints
        shipped = None
    if shipped is None:
        which = "this edgebot ships no default bundle"
    elif profile_bundle == shipped:
        which = f"learned with the shipped default bundle {shipped}"
    else:
        which = f"not the shipped default bundle ({shipped})"
    return (f"  {which}; the profile is tied to its bundle: an agent started with another bundle (a new "
            "default bundle after an upgrade included) restarts learning, allow rules are kept")


def register(main: click.Group, handle_errors, context_settings: dict, echo_json) -> None:
    """Add the ``site`` group and the ``allow`` command to the CLI."""

    @main.group(context_settings=context_settings, short_help="Show or reset what the gateway learned about its site.")
    def site() -> None:
        """The site profile: each device's learning state, threshold and usual peers."""

    @site.command("status", context_settings=context_settings)
    @_state_options
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    @handle_errors
    def site_status(state_dir, config_path, as_json) -> None:
        """List the devices the gateway knows: learning or not, their thresholds, flows learned.

        \b
        Example:
          edgebot site status --state-dir /var/lib/edgebot
        """
        from edgebot.allow import AllowList
        from edgebot.site import PROFILE_FILE

        root = resolve_state_dir(state_dir, config_path)
        path = root / PROFILE_FILE
        if not path.exists():
            raise ConfigError(f"no site profile in {root} yet (the agent writes {PROFILE_FILE} while it runs "
                              "with a live source, or with site.persist = \"yes\")")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            devices = data["devices"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a readable site profile ({exc}); `edgebot site reset` starts over") from None
        rules = AllowList(root).listing(known_hosts=set(devices))
        if as_json:
            echo_json({"path": str(path), "bundle_id": data.get("bundle_id"), "site_start": data.get("site_start"),
                       "devices": devices, "evicted": data.get("evicted", 0), "allow_rules": rules})
            return
        click.echo(f"site profile {path} (bundle {data.get('bundle_id')}, saved {_iso(data.get('saved'))})")
        click.echo(upgrade_note(data.get("bundle_id")))
        click.echo(f"site learning started {_iso(data.get('site_start'))}; {len(devices)} device(s), "
                   f"{data.get('evicted', 0)} evicted")
        click.echo(f"  {'device':<40} {'state':<9} {'learns until':<21} {'threshold':>9} {'learned':>8} {'peers':>5}")
        for host, d in sorted(devices.items()):
            learning = d["last_seen"] < d["learn_until"]
            own = d["learned_flows"] >= 20 and not learning
            th = f"{d['threshold']:.4f}" if own else "bundle"
            click.echo(f"  {host:<40} {'learning' if learning else 'learned':<9} {_iso(d['learn_until']):<21} "
                       f"{th:>9} {d['learned_flows']:>8} {len(d['peers']):>5}")
        if rules:
            click.echo(f"allow rules ({len(rules)}):")
            for r in rules:
                target = r["host"] if r["peer"] is None else f"{r['host']} -> {r['peer']}:{r['port'] or '*'}"
                known = "" if r["known_host"] else "  (host not seen yet)"
                click.echo(f"  {r['id']}  {target}  {r['reason']}{known}")

    @site.command("reset", context_settings=context_settings)
    @click.argument("host", required=False)
    @_state_options
    @handle_errors
    def site_reset(host, state_dir, config_path) -> None:
        """Forget what was learned (one device, or the whole site): learning starts over.

        A running agent applies it within a second; otherwise the saved profile is changed.

        \b
        Examples:
          edgebot site reset                 # the whole site learns again
          edgebot site reset 192.168.1.20    # one device learns again from its next flow
        """
        from edgebot.site import request_reset

        root = resolve_state_dir(state_dir, config_path)
        applied = request_reset(root, host)
        what = f"device {host}" if host else "the whole site"
        click.echo(f"reset requested for {what} in {root}" + ("; the saved profile was updated" if applied else ""))

    @main.command("allow", context_settings=context_settings,
                  short_help="Mark a host (or host and peer) as a false alarm: its evidence is suppressed.")
    @click.argument("host", required=False)
    @click.option("--peer", help="Only flows to this peer: IP or IP:PORT ([v6]:PORT).")
    @click.option("--reason", default="", help="Why (shown in `edgebot site status`).")
    @click.option("--incident", "incident_id", help="Allow the host of this incident (its id from the incident message).")
    @click.option("--list", "list_rules", is_flag=True, help="List the rules and how many flows each suppressed.")
    @click.option("--remove", "remove_id", metavar="RULE_ID", help="Remove a rule by its id.")
    @_state_options
    @click.option("--json", "as_json", is_flag=True, help="With --list: one JSON object.")
    @handle_errors
    def allow(host, peer, reason, incident_id, list_rules, remove_id, state_dir, config_path, as_json) -> None:
        """Keep suppression rules in the state dir; a running agent applies them without a restart.

        Suppressed flows are still scored and counted (stats, --summary-json), never evidence.
        A rule for a host the gateway has not seen is accepted and listed as such.

        \b
        Examples:
          edgebot allow 192.168.1.20 --reason "NAS backup"
          edgebot allow 192.168.1.30 --peer 52.1.2.3:8883 --reason "vendor cloud"
          edgebot allow --incident 3f2a9c0d1e4b5a69
          edgebot allow --list
        """
        from edgebot.allow import AllowList, make_rule
        from edgebot.site import known_incident

        root = resolve_state_dir(state_dir, config_path)
        rules = AllowList(root)
        if list_rules:
            listing = rules.listing()
            if as_json:
                echo_json({"path": str(rules.path), "rules": listing})
            elif not listing:
                click.echo(f"no allow rules in {root}")
            for r in listing if not as_json else []:
                target = r["host"] if r["peer"] is None else f"{r['host']} -> {r['peer']}:{r['port'] or '*'}"
                click.echo(f"{r['id']}  {target}  {r['reason']}")
            return
        if remove_id:
            if not rules.remove(remove_id):
                raise ConfigError(f"no allow rule with id {remove_id!r} in {rules.path} (see `edgebot allow --list`)")
            click.echo(f"removed rule {remove_id}")
            return
        if incident_id:
            if host:
                raise click.UsageError("give HOST or --incident, not both")
            found = known_incident(root, incident_id)
            if found is None:
                raise ConfigError(f"no incident {incident_id!r} among the recent incidents in {root}; "
                                  "allow its host by address instead")
            host = found["host"]
            reason = reason or f"false alarm (incident {incident_id})"
        if not host:
            raise click.UsageError("give a HOST, --incident ID, --list or --remove RULE_ID")
        rule = make_rule(host, peer, reason, incident_id)
        added = rules.add(rule)
        click.echo(("added" if added else "updated") + f" rule {rule.describe()} in {rules.path}")
