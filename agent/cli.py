"""``keepalived-py``: keepalived's command line, as far as the agent goes today."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from collections.abc import Sequence

from . import __version__
from .config import load
from .config.diag import EXIT_CANNOT_RUN, Level
from .config.render import RenderError, render

DEFAULT_CONFIG = "/etc/keepalived/keepalived.conf"


def default_config_id() -> str:
    """keepalived's default: the host name up to its first dot."""
    return socket.gethostname().split(".", 1)[0]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--use-file", dest="file", default=DEFAULT_CONFIG,
                        help=f"configuration file (default {DEFAULT_CONFIG})")
    parser.add_argument("-i", "--config-id", dest="config_id", default=None,
                        help="id for @id conditional lines (default: host name to the first dot)")


def _main_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keepalived-py",
        description="A keepalived-compatible HA agent. Reads keepalived.conf unchanged.")
    _common(parser)
    parser.add_argument("-t", "--config-test", nargs="?", const="-", default=None,
                        metavar="LOG_FILE",
                        help="check the configuration and exit: 0 ok, 4 cannot run, "
                             "5 errors but would run, 6 script security")
    parser.add_argument("-d", "--dump-conf", action="store_true",
                        help="print the configuration as read, in canonical form")
    # keepalived's run options: we always stay in the foreground for now (the
    # daemon with its children comes with the supervision work); the rest are
    # accepted so that existing unit files and scripts keep working.
    parser.add_argument("-n", "--dont-fork", action="store_true", help="stay in the foreground")
    parser.add_argument("-l", "--log-console", action="store_true", help="log to the console")
    parser.add_argument("-D", "--log-detail", action="store_true", help="detailed log messages")
    parser.add_argument("-P", "--vrrp", action="store_true", help="only run VRRP")
    for short, long in (("-p", "--pid"), ("-r", "--vrrp_pid"), ("-c", "--checkers_pid"),
                        ("-b", "--bfd_pid")):
        parser.add_argument(short, long, metavar="FILE", help="pid file (accepted, not used yet)")
    parser.add_argument("-v", "--version", action="version",
                        version=f"keepalived-py {__version__}")
    return parser


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
    args = _main_parser().parse_args(argv)
    if args.config_test is not None:
        return config_test(args)
    if args.dump_conf:
        result = load(args.file, config_id=args.config_id or default_config_id())
        _report(result, sys.stderr)
        sys.stdout.write(render(result.root))
        return result.diags.exit_code()
    from .vrrp.main import run, setup_logging
    setup_logging()
    return run(args.file, args.config_id or default_config_id())


if __name__ == "__main__":
    sys.exit(main())
