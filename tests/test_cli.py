"""Flags as people type them: Go style, GNU style, with `=`; nothing abbreviated."""

from __future__ import annotations

import subprocess
import sys

import pytest

from asphalt.cli import parse


def test_no_flags_is_a_master_on_8080_with_its_own_worker() -> None:
    master, worker, _ = parse([])
    assert master is not None and master.port == 8080 and master.host == "0.0.0.0"
    assert worker is not None and worker.master_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    "argv", [["-port", "9001"], ["--port", "9001"], ["-port=9001"], ["--port=9001"]]
)
def test_port_in_every_spelling(argv: list[str]) -> None:
    master, _, _ = parse(argv)
    assert master is not None and master.port == 9001


def test_master_flag_makes_a_worker_with_types() -> None:
    master, worker, _ = parse(["-master", "10.0.1.7:8080", "-types", "gpu,mac", "-slots", "3"])
    assert master is None and worker is not None
    assert worker.master_url == "http://10.0.1.7:8080"
    assert worker.types == ("gpu", "mac") and worker.slots == 3


def test_no_worker_starts_the_master_alone() -> None:
    master, worker, _ = parse(["-no-worker"])
    assert master is not None and worker is None


@pytest.mark.parametrize(
    "argv",
    [
        ["-por", "1"],
        ["--po", "1"],
        ["-prot", "1"],
        ["-slots", "0"],
        ["-port", "x"],
        ["-lease", "-1"],
        ["-heartbeat", "60"],
        ["-grace", "-5"],
        ["-swarm-constraint", "gpu"],
        ["-swarm-constraint", "=node.role==manager"],
        ["-swarmer-project", "bad name"],
        ["-swarmer-runtime", "host"],
    ],
)
def test_misspelt_abbreviated_or_bad_flags_are_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse(argv)
    assert caught.value.code == 2
    assert "asphalt" in capsys.readouterr().err


def test_version_and_help_from_the_executable() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "asphalt", "-version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("asphalt ")
    usage = subprocess.run(
        [sys.executable, "-m", "asphalt", "-h"], capture_output=True, text=True, check=True
    )
    assert "-master HOST:PORT" in usage.stdout and "-types" in usage.stdout


def test_master_auto_needs_a_join_token_that_pins_the_master() -> None:
    with pytest.raises(SystemExit):
        parse(["-master", "auto", "-join", "ASPHALT-1-" + "a" * 64])
    _, worker, _ = parse(["-master", "auto", "-join", f"ASPHALT-1-{'b' * 64}-{'a' * 64}"])
    assert worker is not None and worker.master_url == "auto"


def test_swarm_flags_reach_the_worker_and_the_master() -> None:
    argv = ["-swarm-constraint", "gpu=node.labels.gpu==true", "-swarm-network", "jobs"]
    argv += ["-swarm-constraint", "gpu=node.role!=manager", "-swarmer-runtime", "swarm"]
    master, worker, _ = parse([*argv, "-swarmer-project", "legacy"])
    assert worker is not None and master is not None
    assert worker.swarm_constraints == {"gpu": ("node.labels.gpu==true", "node.role!=manager")}
    assert worker.swarm_network == "jobs"
    assert (master.swarmer_project, master.swarmer_runtime) == ("legacy", "swarm")
