"""``keepalived-py``: keepalived's command line, plus ``status`` and ``config``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

from . import __version__
from .config import load
from .config.diag import EXIT_CANNOT_RUN, Level
from .config.render import RenderError, render
from .core import logs
from .core.control import DEFAULT_CONTROL_SOCKET

DEFAULT_CONFIG = "/etc/keepalived/keepalived.conf"
# systemd's StateDirectory=keepalived-py
DEFAULT_MAINTENANCE_FILE = "/var/lib/keepalived-py/maintenance.json"


def default_config_id() -> str:
    """keepalived's default: the host name up to its first dot."""
    return socket.gethostname().split(".", 1)[0]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--use-file", dest="file", default=DEFAULT_CONFIG,
                        help=f"configuration file (default {DEFAULT_CONFIG})")
    parser.add_argument("-i", "--config-id", dest="config_id", default=None,
                        help="id for @id conditional lines (default: host name to the first dot)")


SIGNALS = {"STOP": signal.SIGTERM, "RELOAD": signal.SIGHUP, "DATA": signal.SIGUSR1,
           "STATS": signal.SIGUSR2, "STATS_CLEAR": signal.SIGRTMAX - 1,
           "JSON": signal.SIGRTMIN + 2}
# Under /run/keepalived-py (systemd's RuntimeDirectory), not keepalived's
# /run/keepalived*.pid: a host migrating from keepalived may have both installed.
DEFAULT_PID = "/run/keepalived-py/keepalived.pid"
DEFAULT_VRRP_PID = "/run/keepalived-py/vrrp.pid"


def _main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keepalived-py",
        description="A keepalived-compatible HA agent. Reads keepalived.conf unchanged. "
                    "'keepalived-py status' shows the running agent's state, "
                    "'keepalived-py reload' reloads it and waits, "
                    "'keepalived-py set' changes an instance's live state; "
                    "'keepalived-py config render' prints a configuration in canonical form.")
    _common(parser)
    parser.add_argument("-t", "--config-test", nargs="?", const="-", default=None,
                        metavar="LOG_FILE",
                        help="check the configuration and exit: 0 ok, 4 cannot run, "
                             "5 errors but would run, 6 script security")
    parser.add_argument("-d", "--dump-conf", action="store_true",
                        help="print the configuration as read, in canonical form")
    parser.add_argument("-n", "--dont-fork", action="store_true",
                        help="stay in the foreground (as under systemd)")
    parser.add_argument("-l", "--log-console", action="store_true",
                        help="log to the console instead of syslog")
    parser.add_argument("-D", "--log-detail", action="store_true", help="detailed log messages")
    parser.add_argument("-S", "--log-facility", default="daemon", choices=sorted(logs.FACILITIES),
                        metavar="0-7|local0-7|user|daemon", help="syslog facility")
    parser.add_argument("-G", "--no-syslog", action="store_true", help="do not log to syslog")
    parser.add_argument("-P", "--vrrp", action="store_true", help="only run VRRP")
    parser.add_argument("-C", "--check", action="store_true",
                        help="only run the health checkers (none in this version: no VRRP)")
    parser.add_argument("-B", "--no_bfd", action="store_true", help="do not run BFD")
    parser.add_argument("-p", "--pid", default=DEFAULT_PID, metavar="FILE",
                        help=f"parent pid file (default {DEFAULT_PID})")
    parser.add_argument("-r", "--vrrp_pid", default=DEFAULT_VRRP_PID, metavar="FILE",
                        help=f"VRRP process pid file (default {DEFAULT_VRRP_PID})")
    parser.add_argument("-c", "--checkers_pid", metavar="FILE",
                        help="checker process pid file (accepted; no checker process yet)")
    parser.add_argument("-b", "--bfd_pid", metavar="FILE",
                        help="BFD process pid file (accepted; no BFD process yet)")
    parser.add_argument("-X", "--release-vips", action="store_true",
                        help="accepted for compatibility (a debug option of keepalived's)")
    parser.add_argument("-V", "--dont-release-vrrp", action="store_true",
                        help="leave VIPs, virtual routes and rules in place on stop")
    parser.add_argument("-I", "--dont-release-ipvs", action="store_true",
                        help="leave the IPVS topology in place on stop (no IPVS yet)")
    parser.add_argument("-R", "--dont-respawn", action="store_true",
                        help="do not restart a child process that dies: stop instead")
    parser.add_argument("--signum", choices=sorted(SIGNALS), metavar="|".join(SIGNALS),
                        help="print the number of the signal for that action and exit")
    parser.add_argument("--control-socket", default=DEFAULT_CONTROL_SOCKET, metavar="PATH",
                        help=f"control socket (default {DEFAULT_CONTROL_SOCKET})")
    parser.add_argument("--metrics-listen", metavar="[ADDR]:PORT",
                        help="serve Prometheus metrics there (address default 127.0.0.1)")
    parser.add_argument("--maintenance-file", default=DEFAULT_MAINTENANCE_FILE, metavar="PATH",
                        help="where `keepalived-py set` settings are kept across restarts "
                             f"(default {DEFAULT_MAINTENANCE_FILE}; '' not to keep them)")
    parser.add_argument("-v", "--version", action="version",
                        version=f"keepalived-py {__version__}")
    return parser


def _status_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keepalived-py status",
                                     description="Show the running agent's state.")
    parser.add_argument("--control-socket", default=DEFAULT_CONTROL_SOCKET, metavar="PATH")
    parser.add_argument("--json", action="store_true", help="the whole answer, as JSON")
    parser.add_argument("-w", "--wide", action="store_true", help="list every VIP")
    return parser


def reload_command(argv: Sequence[str]) -> int:
    """Reload and wait for the outcome: exit 0 when applied, 1 when refused."""
    from .core.control import ControlError, query
    parser = argparse.ArgumentParser(prog="keepalived-py reload",
                                     description="Reload the running agent and wait.")
    parser.add_argument("--control-socket", default=DEFAULT_CONTROL_SOCKET, metavar="PATH")
    args = parser.parse_args(argv)
    try:
        answer = query(args.control_socket, {"request": "reload"}, timeout=300)
    except ControlError as err:
        print(f"keepalived-py: {err}", file=sys.stderr)
        return 3
    if answer.get("ok"):
        print("reloaded")
        return 0
    for line in answer.get("errors") or [answer.get("error", "reload failed")]:
        print(line, file=sys.stderr)
    print("keepalived-py: reload refused: the running configuration is kept", file=sys.stderr)
    return 1


def set_command(argv: Sequence[str]) -> int:
    """Maintenance: a priority override or a forced BACKUP, and back."""
    from .core.control import ControlError, query
    parser = argparse.ArgumentParser(
        prog="keepalived-py set",
        description="Change an instance's live state: kept across reloads, not restarts.")
    parser.add_argument("instance")
    parser.add_argument("--priority", metavar="1-254|none",
                        help="override the configured priority; 'none' goes back to it")
    parser.add_argument("--force-backup", choices=("on", "off"),
                        help="on: hand over and never become master; off: back to normal")
    parser.add_argument("--control-socket", default=DEFAULT_CONTROL_SOCKET, metavar="PATH")
    args = parser.parse_args(argv)
    request: dict[str, object] = {"request": "set", "instance": args.instance}
    if args.priority is not None:
        try:
            request["priority"] = None if args.priority == "none" else int(args.priority)
        except ValueError:
            parser.error(f"--priority {args.priority}: a number or 'none'")
    if args.force_backup is not None:
        request["force_backup"] = args.force_backup == "on"
    if len(request) == 2:
        parser.error("nothing to set: give --priority or --force-backup")
    try:
        answer = query(args.control_socket, request)
    except ControlError as err:
        print(f"keepalived-py: {err}", file=sys.stderr)
        return 3
    if not answer.get("ok"):
        print(f"keepalived-py: {answer.get('error')}", file=sys.stderr)
        return 1
    print(f"{answer['instance']}: {answer['state']}, priority {answer['effective_priority']}"
          f"{' (forced BACKUP)' if answer['force_backup'] else ''}")
    return 0


def status_command(argv: Sequence[str]) -> int:
    from .core.control import ControlError, query
    from .core.status import render_status
    args = _status_parser().parse_args(argv)
    try:
        answer = query(args.control_socket, {"request": "status"})
    except ControlError as err:
        print(f"keepalived-py: {err}", file=sys.stderr)
        return 3        # LSB: program is not running
    if args.json:
        json.dump(answer, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_status(answer, wide=args.wide))
    return 0 if answer.get("ok") else 1


def run_daemon(args: argparse.Namespace) -> int:
    from .core.supervisor import (
        Settings,
        Supervisor,
        already_running,
        daemonize,
        reload_check_log,
    )
    from .vrrp.main import ConfigRefused, read_config
    config_id = args.config_id or default_config_id()
    options = logs.LogOptions(console=args.log_console, detail=args.log_detail,
                              facility=args.log_facility, syslog=not args.no_syslog)
    logs.setup("Keepalived", options)
    log = logging.getLogger("keepalived_py")
    log.info("Starting keepalived-py %s", __version__)
    pid = already_running(args.pid)
    if pid is not None:
        log.error("daemon is already running (pid %d in %s)", pid, args.pid)
        return 1
    try:
        config = read_config(args.file, config_id, strict=False)
    except ConfigRefused as refused:
        refused.log("Stopping: the configuration cannot be run")
        return EXIT_CANNOT_RUN
    result = config.result
    for diag in result.diags:
        log.info("%s", diag)
    glob = result.root.blocks("global_defs")
    if not args.dont_fork:
        daemonize()
        logs.setup("Keepalived", options)
    settings = Settings(
        path=os.path.abspath(args.file), config_id=config_id, log=options, pid_file=args.pid,
        vrrp_pid_file=args.vrrp_pid, respawn=not args.dont_respawn,
        release_vips=not args.dont_release_vrrp, run_vrrp=not args.check,
        control_socket=args.control_socket or None, metrics_listen=args.metrics_listen,
        reload_check_log=reload_check_log(result.root),
        maintenance_file=args.maintenance_file or None,
        startup_script=config.scripts.get("global_defs", None, "startup_script"),
        startup_timeout=float(glob[0].get("startup_script_timeout")) if glob else 10,
        shutdown_script=config.scripts.get("global_defs", None, "shutdown_script"),
        shutdown_timeout=float(glob[0].get("shutdown_script_timeout")) if glob else 10)
    return asyncio.run(Supervisor(settings).run())


def _config_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keepalived-py config",
                                     description="Work with keepalived.conf files.")
    sub = parser.add_subparsers(dest="action", required=True)
    rend = sub.add_parser("render", help="print the configuration in canonical form")
    _common(rend)
    rend.add_argument("--json", action="store_true", help="print the model as JSON")
    return parser


def _report(result, out) -> None:
    for diag in result.diags:
        print(diag, file=out)


def _not_acted(result, out) -> None:
    if result.not_acted:
        names = ", ".join(sorted(result.not_acted))
        print(f"note: read but not acted on by this version of the agent yet: {names}",
              file=out)


def config_test(args: argparse.Namespace) -> int:
    config_id = args.config_id or default_config_id()
    result = load(args.file, config_id=config_id)
    log = sys.stderr if args.config_test in (None, "-") else open(  # noqa: SIM115
        args.config_test, "a", encoding="utf-8")
    try:
        _report(result, log)
        if args.dump_conf:
            sys.stdout.write(render(result.root))
        _not_acted(result, log)
        code = result.diags.exit_code()
        highest = result.diags.highest()
        verdict = "ok" if code == 0 else highest.name.lower().replace("_", " ")
        print(f"{args.file}: configuration test: {verdict} (exit {code})", file=log)
    finally:
        if log is not sys.stderr:
            log.close()
    return code


def config_command(argv: Sequence[str]) -> int:
    args = _config_parser().parse_args(argv)
    result = load(args.file, config_id=args.config_id or default_config_id())
    _report(result, sys.stderr)
    if result.diags.highest() in (Level.FILE_NOT_FOUND, Level.FATAL):
        return EXIT_CANNOT_RUN
    if args.json:
        json.dump(result.root.to_json(), sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
        return 0
    try:
        sys.stdout.write(render(result.root))
    except RenderError as e:
        print(f"keepalived-py: cannot render: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "config":
        return config_command(argv[1:])
    if argv and argv[0] == "status":
        return status_command(argv[1:])
    if argv and argv[0] == "reload":
        return reload_command(argv[1:])
    if argv and argv[0] == "set":
        return set_command(argv[1:])
    args = _main_parser().parse_args(argv)
    if args.config_test is not None:
        return config_test(args)
    if args.dump_conf:
        result = load(args.file, config_id=args.config_id or default_config_id())
        _report(result, sys.stderr)
        sys.stdout.write(render(result.root))
        return result.diags.exit_code()
    if args.signum:
        print(int(SIGNALS[args.signum]))
        return 0
    return run_daemon(args)


if __name__ == "__main__":
    sys.exit(main())
