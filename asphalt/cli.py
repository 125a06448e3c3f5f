"""Flags to config; starts a master (with its embedded worker) or a worker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from asphalt import client, discovery, flags, log
from asphalt.config import MasterConfig, WorkerConfig
from asphalt.errors import AsphaltError, Unauthorized
from asphalt.limits import NO_LIMITS, parse_limits_flag
from asphalt.master.app import SSL_CONTEXT, build_app, stop_accepting
from asphalt.master.http import addresses, auth
from asphalt.model.bodies import NAME_PATTERN, NAME_RULE
from asphalt.model.hook_allow import HookAllow
from asphalt.protocol import parse_join
from asphalt.worker.agent import Agent
from asphalt.worker.client import MasterClient, pin_of, proves_pin
from asphalt.worker.runtimes import Runtime, detect_runtimes
from asphalt.worker.runtimes.base import check_env_allow

_log = log.get("asphalt.cli")


def _constraints(given: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """-swarm-constraint TYPE=CONSTRAINT flags, by type; ValueError naming one that is not."""
    found: dict[str, tuple[str, ...]] = {}
    for item in given:
        kind, _, constraint = item.partition("=")
        if not kind.strip() or not re.search(r"(==|!=)", constraint):
            raise ValueError(
                f"-swarm-constraint {item!r} must be TYPE=CONSTRAINT, e.g. "
                "gpu=node.labels.gpu==true"
            )
        found[kind.strip()] = (*found.get(kind.strip(), ()), constraint.strip())
    return found


def _master_url(raw: str, *, pinned: bool) -> str:
    if raw == "auto":
        return raw
    url = raw if "://" in raw else f"{'https' if pinned else 'http'}://{raw}"
    if ":" not in url.split("://", 1)[1]:
        url += ":8080"
    return url


def _state_dir(args: argparse.Namespace) -> Path:
    if not args.master:
        return Path(args.data) / "worker"
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "asphalt"


def parse(
    argv: Sequence[str] | None,
) -> tuple[MasterConfig | None, WorkerConfig | None, tuple[str, str]]:
    """The configs to run: (master, worker); either may be None, never both."""
    parser = flags.parser()
    args = parser.parse_args(argv)
    if args.slots < 1:
        parser.error("-slots must be at least 1")
    if not 0 <= args.lost_retries <= 100:
        parser.error("-lost-retries must be from 0 to 100")
    if not 0 <= args.keep_days <= 36500:
        parser.error("-keep-days must be from 0 (keep) to 36500")
    if not re.fullmatch(NAME_PATTERN, args.swarmer_project):
        parser.error(f"-swarmer-project must be {NAME_RULE}")
    if not 0 < args.port < 65536:
        parser.error("-port must be from 1 to 65535")
    positive = ("lease", "heartbeat", "poll_hold", "output_cap", "map_size", "artifact_cap")
    for name in (*positive, "unrunnable_after"):
        if not getattr(args, name) > 0:
            parser.error(f"-{name.replace('_', '-')} must be above 0")
    if args.heartbeat >= args.lease:
        parser.error("-heartbeat must be shorter than -lease, or every lease would run out")
    if args.grace < 0 or args.drain < 0:
        parser.error("-grace and -drain must be 0 or more seconds")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("-tls-cert and -tls-key go together: give both files")
    if args.tls and args.tls_cert:
        parser.error("-tls auto makes its own certificate; leave out -tls-cert and -tls-key")
    join = (args.join or "").strip() or None
    if join is not None and parse_join(join) is None:
        parser.error("-join takes the token the master printed (it starts with ASPHALT-1-)")
    pinned = pin_of(join) is not None
    if args.master and pinned and args.master.startswith("http://"):
        parser.error("the join token pins the master's TLS certificate: use -master https://...")
    if args.master == "auto" and not pinned:
        # Anyone on the network can advertise a master; only a pin tells the real one apart,
        # and without one the join token would go to whoever answered first.
        parser.error(
            "-master auto needs a join token that pins the master's certificate: start the "
            "master with -tls auto and use the join token it prints"
        )
    types = tuple(sorted({t.strip() for t in args.types.split(",") if t.strip()}))
    try:
        env_allow = check_env_allow(n.strip() for n in args.env_allow.split(",") if n.strip())
        limits = parse_limits_flag(args.limits) if args.limits.strip() else NO_LIMITS
        hook_allow = tuple(n.strip() for n in args.hook_allow.split(",") if n.strip())
        HookAllow(hook_allow)  # checked now, so a typo is a usage error
        constraints = _constraints(args.swarm_constraint)
    except ValueError as e:
        parser.error(str(e))
    worker = WorkerConfig(
        master_url=_master_url(args.master or "", pinned=pinned),
        join=join,
        env_allow=env_allow,
        limits=limits,
        measure=args.measure,
        name=args.name,
        host=socket.gethostname(),
        types=types,
        untyped=args.untyped,
        slots=args.slots,
        docker_network=args.docker_network,
        swarm_network=args.swarm_network,
        swarm_constraints=constraints,
        grace_s=args.grace,
        # A worker of its own stops with the master: its jobs go back to the queue at once.
        drain_s=args.drain if args.master else 0.0,
        state_dir=(state := Path(args.state) if args.state else _state_dir(args)),
        work_dir=state / "work" if args.master else None,
        mdns_interface=args.mdns_interface,
    )
    if args.master:
        return None, worker, (args.log, args.log_level)
    master = MasterConfig(
        host=args.host,
        port=args.port,
        data_dir=Path(args.data),
        lease_s=args.lease,
        lost_retries=args.lost_retries,
        keep_days=args.keep_days,
        hook_allow=hook_allow,
        heartbeat_s=args.heartbeat,
        poll_hold_s=args.poll_hold,
        output_cap=args.output_cap,
        artifact_cap=args.artifact_cap,
        unrunnable_after_s=args.unrunnable_after,
        swarmer_project=args.swarmer_project,
        swarmer_runtime=args.swarmer_runtime,
        map_size=args.map_size << 20,
        advertise=args.advertise,
        mdns_interface=args.mdns_interface,
        name=args.name,
        auth=args.auth,
        public_url=args.public_url,
        allow_hosts=tuple(args.allow_host),
        tls=args.tls,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        own_worker=not args.no_worker,
    )
    # The worker of its own reaches it on loopback; its join token comes in-process at start.
    worker = replace(worker, master_url=addresses.local_base(master), join=None)
    return master, None if args.no_worker else worker, (args.log, args.log_level)


async def _close(runtimes: list[Runtime]) -> None:
    for runtime in runtimes:
        await runtime.close()


async def _serve(master: MasterConfig | None, worker: WorkerConfig | None) -> None:
    """Run until a signal; the first drains (or stops cleanly), a second forces."""
    stop, force = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: (force if stop.is_set() else stop).set())
    async with contextlib.AsyncExitStack() as stack:
        app = None
        if master is not None:
            app = build_app(master)
            runner = web.AppRunner(
                app,
                handle_signals=False,
                access_log=None,
                shutdown_timeout=5.0,
                keepalive_timeout=75.0,  # a client that stalls mid-headers is let go
            )
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            context = app.get(SSL_CONTEXT)
            await web.TCPSite(runner, master.host, master.port, ssl_context=context).start()
            _announce(app, master)
            if worker is not None:  # its own worker joins in-process, pinned like any other
                worker = replace(worker, join=app[auth.CREDENTIALS].embedded_join)
            if master.advertise:
                address = master.mdns_interface or master.host
                await stack.enter_async_context(
                    discovery.advertised(master.name, address, master.port, scheme=master.scheme)
                )
        agent = None
        if worker is not None and worker.master_url == "auto":
            pin = pin_of(worker.join) or ""  # parse() let auto through with a pin only
            found = await discovery.find_master(
                interface=worker.mdns_interface, accept=lambda url: proves_pin(url, pin)
            )
            _log.info("master_found", url=found)
            worker = replace(worker, master_url=found)
        if worker is not None:
            runtimes = await detect_runtimes(
                docker_network=worker.docker_network,
                env_allow=worker.env_allow,
                work_root=worker.work_dir,
                limits=worker.limits,
                state_dir=worker.state_dir,
                cgroups=worker.measure == "cgroup",
                swarm_network=worker.swarm_network,
                swarm_constraints=worker.swarm_constraints,
            )
            stack.push_async_callback(_close, runtimes)
            client = MasterClient(worker.master_url, join=worker.join)
            await stack.enter_async_context(client)
            agent = Agent(worker, runtimes, client)
        async with asyncio.TaskGroup() as group:
            run = (
                _embedded(agent) if agent and master is not None else agent.run() if agent else None
            )
            working = group.create_task(run, name="worker") if run else None
            await stop.wait()
            _log.info("stopping", hint="a second signal forces")
            if app is not None:
                stop_accepting(app)
            if agent is not None and working is not None:
                agent.drain()
                forced = group.create_task(force.wait())
                await asyncio.wait({working, forced}, return_when=asyncio.FIRST_COMPLETED)
                working.cancel()
                forced.cancel()
    _log.info("stopped")


async def _embedded(agent: Agent) -> None:
    """The master's own worker: if it is revoked the master goes on without it."""
    try:
        await agent.run()
    except Unauthorized as e:
        _log.error("embedded_worker_stopped", error=e.message, hint="restart the master")


def _announce(app: web.Application, master: MasterConfig) -> None:
    """Say where the UI is, how to start a worker, and loudly when others can reach it."""
    credentials = app[auth.CREDENTIALS]
    _log.info(
        "master_serving",
        ui=addresses.public_base(master) + "/",
        here=addresses.local_base(master) + "/",
        data=str(master.data_dir.resolve()),
    )
    command = f"{addresses.worker_command(master)} -join {credentials.join_token}"
    _log.info("worker_command", command=command)
    if master.auth == "off":
        _log.warning(
            "auth_off", message="-auth off: ANYONE who can reach this master runs commands"
        )
    elif addresses.beyond_loopback(master):
        _log.warning(
            "listening_beyond_loopback",
            address=master.host,
            port=master.port,
            message="other machines can reach this master: they need a token "
            f"({master.data_dir / 'admin.token'}, or POST /tokens)"
            + ("" if master.auth == "always" else "; requests made on this box need none"),
        )


def _refusal(error: BaseException) -> AsphaltError | None:
    """The first AsphaltError inside what asyncio.run raised, groups included."""
    if isinstance(error, AsphaltError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _refusal(inner)
            if found is not None:
                return found
    return None


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given and given[0] in client.SUBCOMMANDS:  # the terminal client: run, logs, ls, ...
        return client.main(given[0], given[1:])
    master, worker, (log_format, log_level) = parse(given)
    log.setup(log_format, level=log.LEVELS[log_level])
    try:
        asyncio.run(_serve(master, worker))
    except (AsphaltError, BaseExceptionGroup) as e:
        found = _refusal(e)
        if found is None:
            raise
        print(f"asphalt: {found.message}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"asphalt: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
