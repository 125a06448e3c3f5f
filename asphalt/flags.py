"""The command line's flags: what each means and its default (cli.py turns them into config)."""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any

from asphalt import __version__

USAGE = """asphalt [flags]                 start a master with its own worker on :8080
  asphalt -master HOST:PORT [flags]   start a worker for that master
  asphalt run [-project P] [-container IMAGE] [-detach] -- CMD ARGS...
                                      run a command there and show it here; exit with its code
  asphalt logs [-f] JOB               a job's output (-f: until it ends)
  asphalt ls [PROJECT]                projects, or a project's tasks (-json for scripts)
  asphalt show|rerun|cancel TASK|JOB  a task or job (-project P: default)
  asphalt workers                     the workers
  asphalt login HOST:PORT             keep a master and token in ~/.config/asphalt
  (every subcommand takes -master HOST:PORT, -token TOKEN, -json and -h)"""


class _ExactParser(argparse.ArgumentParser):
    """argparse that matches flags exactly: even with allow_abbrev=False, Python 3.11 still
    takes `-por` for `-port` (prefixes of single-dash flags), so a typo would pass unseen."""

    def _get_option_tuples(self, option_string: str) -> list[Any]:
        return []


def parser() -> argparse.ArgumentParser:
    p = _ExactParser(
        prog="asphalt",
        usage=USAGE,
        description="Asphalt: run container jobs across machines from one executable.",
        allow_abbrev=False,
    )

    def flag(name: str, **kw: object) -> None:
        p.add_argument(f"-{name}", f"--{name}", **kw)  # type: ignore[arg-type]

    flag("port", type=int, default=8080, help="master: port to serve the API and UI on (8080)")
    flag("host", default="0.0.0.0", help="master: address to listen on (0.0.0.0)")
    flag(
        "data",
        default="asphalt-data",
        metavar="DIR",
        help="master: data directory (./asphalt-data)",
    )
    flag("master", metavar="HOST:PORT", help="run as a worker for that master; auto: find one")
    flag("advertise", action="store_true", help="master: announce itself on the network (mDNS)")
    flag("mdns-interface", metavar="ADDR", help="the one interface mDNS uses (default: all)")
    flag(
        "types", default="", metavar="A,B", help="worker: capability types it offers, e.g. gpu,mac"
    )
    flag("untyped", action="store_true", help="worker: with -types, also run jobs naming none")
    flag(
        "slots", type=int, default=os.cpu_count() or 2, metavar="N", help="worker: jobs run at once"
    )
    flag("name", default=socket.gethostname(), help="worker: name shown in /workers (host name)")
    flag("no-worker", action="store_true", help="master: do not start the embedded worker")
    flag(
        "lost-retries",
        type=int,
        default=2,
        metavar="N",
        help="master: times a job whose worker was lost runs again, apart from its retries (2)",
    )
    flag(
        "keep-days",
        type=int,
        default=0,
        metavar="N",
        help="master: remove completed tasks and their output after N days (0: keep them)",
    )
    flag(
        "hook-allow",
        default="",
        metavar="NET,DOMAIN",
        help="master: where webhooks and task callbacks may point, e.g. 10.0.0.0/8,example.com "
        "(default: anywhere)",
    )
    flag(
        "swarmer-project",
        default="swarmer",
        metavar="NAME",
        help="master: the project whose tasks are the Swarmer API's jobs (swarmer)",
    )
    flag(
        "swarmer-runtime",
        choices=("docker", "swarm"),
        default="docker",
        help="master: what Swarmer API jobs run in: docker (default) or swarm",
    )
    flag(
        "swarm-constraint",
        action="append",
        default=[],
        metavar="TYPE=CONSTRAINT",
        help="worker: a swarm job of this type is placed by this constraint, e.g. "
        "gpu=node.labels.gpu==true (repeat the flag for more)",
    )
    flag(
        "swarm-network",
        metavar="NET",
        help="worker: the network swarm jobs' services join (default: the engine's)",
    )
    flag("docker-network", default="bridge", metavar="NET", help="worker: network for containers")
    flag(
        "drain",
        type=float,
        default=60.0,
        metavar="S",
        help="worker: on SIGTERM, time for jobs to end before they are handed back (60)",
    )
    flag(
        "state",
        metavar="DIR",
        help="worker: its lock files, to end what a killed run left (~/.local/state/asphalt)",
    )
    flag("grace", type=float, default=10.0, metavar="S", help="worker: SIGTERM to SIGKILL grace")
    flag("lease", type=float, default=45.0, metavar="S", help="master: job lease length")
    flag("heartbeat", type=float, default=10.0, metavar="S", help="master: heartbeat interval")
    flag("poll-hold", type=float, default=25.0, metavar="S", help="master: long-poll hold")
    flag("map-size", type=int, default=8192, metavar="MIB", help="master: store size limit (8192)")
    flag(
        "output-cap", type=int, default=8 << 20, metavar="BYTES", help="master: output kept per job"
    )
    flag(
        "artifact-cap",
        type=int,
        default=256 << 20,
        metavar="BYTES",
        help="master: artifacts kept per job attempt; files past it are listed as dropped",
    )
    flag(
        "unrunnable-after",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="master: a queued job that no live worker can run fails after this long (600)",
    )
    flag(
        "join",
        metavar="TOKEN",
        default=os.environ.get("ASPHALT_JOIN"),
        help="worker: the master's join token (or env ASPHALT_JOIN); the master prints it",
    )
    flag(
        "auth",
        choices=("local", "always", "off"),
        default="local",
        help="master: local (default): requests made on this box need no token; always: every "
        "request needs one; off: nobody needs one (trusted labs only)",
    )
    flag("public-url", metavar="URL", help="master: the URL people and workers reach it by")
    flag(
        "allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="master: another name a browser may reach it by (repeat the flag for more)",
    )
    flag("tls", choices=("auto",), help="master: auto: serve HTTPS with a self-signed certificate")
    flag("tls-cert", metavar="FILE", help="master: serve HTTPS with this certificate (PEM)")
    flag("tls-key", metavar="FILE", help="master: the key of -tls-cert (PEM)")
    flag(
        "env-allow",
        default="",
        metavar="NAME,PREFIX_*",
        help="worker: variables of its own environment that host jobs may see",
    )
    flag(
        "measure",
        choices=("rusage", "cgroup"),
        default="rusage",
        help="worker: how host jobs' CPU and peak memory are measured: rusage (counts the "
        "worker's own memory at the fork) or cgroup (exact, where one can be made; ~1 ms a job)",
    )
    flag(
        "limits",
        default="",
        metavar="memory=2g,cpus=2,pids=1024",
        help="worker: defaults for docker jobs that set no limits of their own",
    )
    flag("log", choices=("auto", "console", "json"), default="auto", help="log format (auto)")
    flag(
        "log-level",
        choices=("debug", "info", "warning"),
        default="info",
        help="info (default) logs every change and error; debug also every read",
    )
    p.add_argument("-version", "--version", action="version", version=f"asphalt {__version__}")
    return p
