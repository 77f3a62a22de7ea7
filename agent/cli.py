"""``keepalived-py``: keepalived's command line, plus ``status`` and ``config``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

from . import __version__
from .children import KINDS
from .config import load
from .config.diag import EXIT_CANNOT_RUN, Level
from .config.model import Node
from .config.render import RenderError, render
from .core import logs
from .core.daemon import (
    EXIT_FATAL,
    EXIT_MISSING_PERMISSION,
    EXIT_NO_CONFIG,
    EXIT_PROGRAM_ERROR,
    ConfigRefused,
    read_checked,
)
from .core.paths import (
    AgentKey,
    PathsError,
    RunPaths,
    current_namespace,
    find_control_socket,
    join_namespace,
    live_pid,
)

DEFAULT_CONFIG = "/etc/keepalived/keepalived.conf"
EXIT_NOT_RUNNING = 3        # LSB: program is not running (or cannot be reached)


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


class Refused(Exception):
    """A command that cannot go on: one line for the person, and the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _which_agent(parser: argparse.ArgumentParser) -> None:
    """How a client names the agent it means (core/paths.py)."""
    parser.add_argument("--control-socket", metavar="PATH",
                        help="the agent's control socket (default: found from the "
                             "namespace and instance)")
    parser.add_argument("-s", "--namespace", metavar="NAME",
                        help="the agent of that network namespace (default: the one this "
                             "command runs in)")
    parser.add_argument("--instance", metavar="NAME",
                        help="the agent of that `instance` name, where several share a "
                             "namespace")


def _control_socket(args: argparse.Namespace) -> str:
    if args.control_socket:
        return args.control_socket
    try:
        return str(find_control_socket(args.namespace, args.instance))
    except PathsError as err:
        raise Refused(str(err), EXIT_NOT_RUNNING) from None


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
    parser.add_argument("--all", action="store_true",
                        help="run every child process, even one the configuration gives no "
                             "work")
    parser.add_argument("-s", "--namespace", metavar="NAME",
                        help="run in the network namespace /run/netns/NAME (overrides the "
                             "configuration's net_namespace)")
    parser.add_argument("-p", "--pid", metavar="FILE",
                        help="parent pid file (default keepalived.pid in the run directory, "
                             "see README: several agents on one host)")
    parser.add_argument("-r", "--vrrp_pid", metavar="FILE",
                        help="VRRP process pid file (default vrrp.pid beside it)")
    parser.add_argument("-c", "--checkers_pid", metavar="FILE",
                        help="checker process pid file (default checkers.pid beside it)")
    parser.add_argument("-b", "--bfd_pid", metavar="FILE",
                        help="BFD process pid file (accepted; no BFD process yet)")
    parser.add_argument("-X", "--release-vips", action="store_true",
                        help="accepted for compatibility (a debug option of keepalived's)")
    parser.add_argument("-V", "--dont-release-vrrp", action="store_true",
                        help="leave VIPs, virtual routes and rules in place on stop")
    parser.add_argument("-I", "--dont-release-ipvs", action="store_true",
                        help="leave the IPVS topology in place on stop")
    parser.add_argument("-R", "--dont-respawn", action="store_true",
                        help="do not restart a child process that dies: stop instead")
    parser.add_argument("--signum", choices=sorted(SIGNALS), metavar="|".join(SIGNALS),
                        help="print the number of the signal for that action and exit")
    parser.add_argument("--control-socket", metavar="PATH",
                        help="control socket (default control.sock in the run directory)")
    parser.add_argument("--metrics-listen", metavar="[ADDR]:PORT",
                        help="serve Prometheus metrics there (address default 127.0.0.1)")
    parser.add_argument("--maintenance-file", metavar="PATH",
                        help="where `keepalived-py set` settings are kept across restarts "
                             "(default maintenance.json in the state directory; '' not to "
                             "keep them)")
    parser.add_argument("-v", "--version", action="version",
                        version=f"keepalived-py {__version__}")
    return parser


def _status_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keepalived-py status",
                                     description="Show the running agent's state.")
    _which_agent(parser)
    parser.add_argument("--json", action="store_true", help="the whole answer, as JSON")
    parser.add_argument("-w", "--wide", action="store_true", help="list every VIP")
    return parser


def _ask(args: argparse.Namespace, request: dict[str, object], timeout: float = 5.0
         ) -> dict[str, object]:
    from .core.control import ControlError, query
    try:
        return query(_control_socket(args), request, timeout=timeout)
    except ControlError as err:
        raise Refused(str(err), EXIT_NOT_RUNNING) from None


def reload_command(argv: Sequence[str]) -> int:
    """Reload and wait for the outcome: exit 0 when applied, 1 when refused."""
    parser = argparse.ArgumentParser(prog="keepalived-py reload",
                                     description="Reload the running agent and wait.")
    _which_agent(parser)
    answer = _ask(parser.parse_args(argv), {"request": "reload"}, timeout=300)
    if answer.get("ok"):
        print("reloaded")
        return 0
    children = answer.get("children")
    if isinstance(children, dict):          # checked and accepted, but a child failed
        for name, reply in children.items():
            if not reply.get("ok"):
                print(f"keepalived-py: reload failed in the {name} process: "
                      f"{reply.get('error', 'no reason given')}", file=sys.stderr)
        return 1
    for line in answer.get("errors") or [answer.get("error", "reload failed")]:
        print(line, file=sys.stderr)
    print("keepalived-py: reload refused: the running configuration is kept", file=sys.stderr)
    return 1


def set_command(argv: Sequence[str]) -> int:
    """Maintenance: a priority override or a forced BACKUP, and back."""
    parser = argparse.ArgumentParser(
        prog="keepalived-py set",
        description="Change an instance's live state: kept across reloads and restarts.")
    parser.add_argument("instance_name", metavar="INSTANCE")
    parser.add_argument("--priority", metavar="1-254|none",
                        help="override the configured priority; 'none' goes back to it")
    parser.add_argument("--force-backup", choices=("on", "off"),
                        help="on: hand over and never become master; off: back to normal")
    _which_agent(parser)
    args = parser.parse_args(argv)
    request: dict[str, object] = {"request": "set", "instance": args.instance_name}
    if args.priority is not None:
        try:
            request["priority"] = None if args.priority == "none" else int(args.priority)
        except ValueError:
            parser.error(f"--priority {args.priority}: a number or 'none'")
    if args.force_backup is not None:
        request["force_backup"] = args.force_backup == "on"
    if len(request) == 2:
        parser.error("nothing to set: give --priority or --force-backup")
    answer = _ask(args, request)
    if not answer.get("ok"):
        print(f"keepalived-py: {answer.get('error')}", file=sys.stderr)
        return 1
    print(f"{answer['instance']}: {answer['state']}, priority {answer['effective_priority']}"
          f"{' (forced BACKUP)' if answer['force_backup'] else ''}")
    if answer.get("warning"):
        print(f"keepalived-py: warning: {answer['warning']}", file=sys.stderr)
    return 0


def status_command(argv: Sequence[str]) -> int:
    from .core.status import render_status
    args = _status_parser().parse_args(argv)
    answer = _ask(args, {"request": "status"})
    if args.json:
        json.dump(answer, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_status(KINDS, answer, wide=args.wide))
    return 0 if answer.get("ok") else 1


# -- the daemon ------------------------------------------------------------------------

def _read_to_run(args: argparse.Namespace, config_id: str) -> tuple[Node, AgentKey]:
    """The configuration, read in the namespace the agent runs in, and the agent's key.

    ``-s`` is joined before reading, so that interfaces are checked there; the
    configuration's own ``net_namespace`` after (the checks leave interfaces
    alone when it is set, as keepalived's do)."""
    try:
        if args.namespace:
            join_namespace(args.namespace)
        root = read_checked(args.file, config_id, strict=False).root
        configured = None if args.namespace else root.values.get("net_namespace")
        if configured:
            join_namespace(configured)
    except ConfigRefused as refused:
        _cannot_run(refused.lines)
    except PathsError as err:
        raise Refused(str(err), EXIT_FATAL) from None
    if args.namespace and root.values.get("net_namespace") not in (None, args.namespace):
        logging.getLogger("keepalived_py").info(
            "Overriding config net_namespace '%s' with command line namespace '%s'",
            root.values.get("net_namespace"), args.namespace)
    key = AgentKey(args.namespace or root.values.get("net_namespace") or current_namespace(),
                   root.values.get("instance"))
    return root, key


def _cannot_run(errors: list[str]) -> None:
    """keepalived's KEEPALIVED_EXIT_NO_CONFIG for a configuration it cannot read: each
    reason logged, the last one the refusal's line.  (One a child cannot run, an
    instance it cannot build, stops that child with KEEPALIVED_EXIT_CONFIG, and
    the parent with it, as in keepalived.)"""
    for line in errors[:-1]:
        logging.getLogger("keepalived_py").error("%s", line)
    raise Refused(f"{errors[-1]} - cannot run", EXIT_NO_CONFIG)


def _refuse_if_running(pid_files: Sequence[str | None], control_socket: str | None) -> None:
    """Nothing of a live agent is touched: its pid files and control socket stay its own."""
    from .core.control import answers
    for path in pid_files:
        pid = live_pid(path)
        if pid is not None:
            raise Refused(f"daemon is already running (pid {pid} in {path})", EXIT_FATAL)
    if control_socket and answers(control_socket):
        raise Refused(f"another keepalived-py answers on {control_socket}", EXIT_FATAL)


def run_daemon(args: argparse.Namespace) -> int:
    from .core.supervisor import Settings, Supervisor, daemonize, reload_check_log
    from .host.scripts import config_scripts
    from .vrrp.dumps import parent_dump_file
    config_id = args.config_id or default_config_id()
    options = logs.LogOptions(console=args.log_console, detail=args.log_detail,
                              facility=args.log_facility, syslog=not args.no_syslog)
    logs.setup("Keepalived", options)
    log = logging.getLogger("keepalived_py")
    log.info("Starting keepalived-py %s", __version__)
    root, key = _read_to_run(args, config_id)
    paths = RunPaths.of(key)
    child_pid_files = {k.name: getattr(args, k.pid_option, None)
                       or str(paths.pid_file(k.pid_option.removesuffix("_pid")))
                       for k in KINDS}
    pid_file = args.pid or str(paths.pid_file("keepalived"))
    control = str(paths.control_socket) if args.control_socket is None \
        else args.control_socket or None
    maintenance = str(paths.maintenance_file) if args.maintenance_file is None \
        else args.maintenance_file or None
    _refuse_if_running([pid_file, *child_pid_files.values()], control)
    if args.metrics_listen:
        from .core.metrics import parse_listen
        try:
            parse_listen(args.metrics_listen)
        except ValueError as err:
            raise Refused(str(err), EXIT_FATAL) from None
    if key != AgentKey():
        log.info("Agent %s: run-time files in %s", key.describe(), paths.run_dir)
    scripts = config_scripts(root)
    glob = root.blocks("global_defs")
    only = {"vrrp"} if args.vrrp else {"checker"} if args.check else None
    settings = Settings(
        path=os.path.abspath(args.file), config_id=config_id, log=options, key=key,
        pid_file=pid_file, child_pid_files=child_pid_files,
        enabled=lambda name: (only is None or name in only) and not (
            args.no_bfd and name == "bfd"),
        respawn=not args.dont_respawn, release_vips=not args.dont_release_vrrp,
        release_ipvs=not args.dont_release_ipvs, control_socket=control,
        metrics_listen=args.metrics_listen,
        reload_check_log=reload_check_log(root), maintenance_file=maintenance,
        startup_script=scripts.get("global_defs", None, "startup_script"),
        startup_timeout=float(glob[0].get("startup_script_timeout")) if glob else 10,
        shutdown_script=scripts.get("global_defs", None, "shutdown_script"),
        shutdown_timeout=float(glob[0].get("shutdown_script_timeout")) if glob else 10)
    kinds = KINDS if not args.all else tuple(
        dataclasses.replace(k, wanted=lambda root: True) for k in KINDS)
    if not args.dont_fork:
        daemonize()
        logs.setup("Keepalived", options)
    from .core.control import ControlError
    try:
        return asyncio.run(Supervisor(settings, kinds, root, parent_dump_file).run())
    except (PathsError, ControlError) as err:
        raise Refused(str(err), EXIT_MISSING_PERMISSION if isinstance(err, PathsError)
                      else EXIT_FATAL) from None
    except OSError as err:
        where = f" {err.filename}" if err.filename else ""
        code = EXIT_MISSING_PERMISSION if err.errno in (errno.EACCES, errno.EPERM) \
            else EXIT_FATAL
        raise Refused(f"cannot start:{where} {err.strerror or err}", code) from None


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
    try:
        log = sys.stderr if args.config_test in (None, "-") else open(  # noqa: SIM115
            args.config_test, "a", encoding="utf-8")
    except OSError as err:
        raise Refused(f"cannot write the test's log {args.config_test}: "
                      f"{err.strerror or err}", EXIT_CANNOT_RUN) from None
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
    """Every command; a command that cannot go on ends in one line, never a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except Refused as refused:
        _say(str(refused))
        return refused.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:         # `keepalived-py status | head`
        return 0
    except Exception as err:  # noqa: BLE001 - the last line of defence against a traceback
        logging.getLogger("keepalived_py").debug("internal error", exc_info=True)
        _say(f"internal error: {type(err).__name__}: {err} (a bug: please report it with "
             "the command line)")
        return EXIT_PROGRAM_ERROR


def _say(line: str) -> None:
    """One line on stderr, and in the daemon's log when it has one (once, when the log
    is that same console)."""
    log = logging.getLogger("keepalived_py")
    if log.handlers:
        log.error("%s", line)
    if not any(isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.stderr
               for h in log.handlers):
        print(f"keepalived-py: {line}", file=sys.stderr)


def genhash_command(argv: list[str]) -> int:
    """``keepalived-py genhash``: the digest HTTP_GET/SSL_GET compare (keepalived's genhash)."""
    from .check.genhash import genhash_main
    return genhash_main(argv)


def _dispatch(argv: list[str]) -> int:
    commands = {"config": config_command, "status": status_command,
                "reload": reload_command, "set": set_command, "genhash": genhash_command}
    if argv and argv[0] in commands:
        return commands[argv[0]](argv[1:])
    args = _main_parser().parse_args(argv)
    if args.namespace and (args.config_test is not None or args.dump_conf):
        try:
            join_namespace(args.namespace)      # its interfaces are checked there
        except PathsError as err:
            raise Refused(str(err), EXIT_FATAL) from None
    if args.config_test is not None:
        return config_test(args)
    if args.dump_conf:
        result = load(args.file, config_id=args.config_id or default_config_id())
        _report(result, sys.stderr)
        try:
            sys.stdout.write(render(result.root))
        except RenderError as err:
            raise Refused(f"cannot render: {err}", 1) from None
        return result.diags.exit_code()
    if args.signum:
        print(int(SIGNALS[args.signum]))
        return 0
    return run_daemon(args)


if __name__ == "__main__":
    sys.exit(main())
