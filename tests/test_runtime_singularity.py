"""SingularityRuntime through a stand-in `singularity`: no real one is installed on this machine.

The stand-in records its argv, its own environment and working directory, parses `--env`
as singularity's flag library (pflag's string-to-string flag) does, honours
SINGULARITYENV_/APPTAINERENV_, runs the command with only that environment (as --cleanenv
does, and --containall, which implies it), and implements `pull --name NAME URI` for the
`asphalt-test/*` docker images only. It does not contain anything: the rest of what
--containall does (no host home or /tmp, its own PID and IPC namespaces) is singularity's
own. Everything else about the runtime is real: processes, process groups, signals,
spython's pull.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from harness import Output

from asphalt.worker.runtimes import JobSpec, RuntimeFailure, SingularityRuntime, detect_runtimes
from asphalt.worker.runtimes.base import BASIC_ENV
from asphalt.worker.runtimes.singularity import env_flags

JOB_MARKERS = {"ASPHALT_JOB_ID", "ASPHALT_ATTEMPT", "ASPHALT_WORKER_ID"}

FAKE = """#!{python}
import csv, json, os, sys
args = sys.argv[1:]
with open({log!r}, "a") as log:
    call = {{"argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd()}}
    log.write(json.dumps(call) + "\\n")
while args and args[0] in ("--quiet", "-q", "--debug", "-d", "--silent", "-s"):
    args.pop(0)
if args == ["--version"]:
    print("singularity-ce version 0.0.0-stand-in")
elif args[0] == "pull":
    name, uri = args[args.index("--name") + 1], args[-1]
    if not uri.startswith("docker://asphalt-test/"):
        sys.exit(f"FATAL: While making image from oci registry: {{uri}} not found")
    with open(name, "w") as image:
        image.write(uri)
elif args[0] == "exec":
    args.pop(0)
    clean = "--cleanenv" in args or "--containall" in args
    env = {{}} if clean else dict(os.environ)
    for key, value in os.environ.items():
        for prefix in ("SINGULARITYENV_", "APPTAINERENV_"):
            if key.startswith(prefix):
                env[key[len(prefix):]] = value
    binds = []
    while args[0].startswith("-"):
        flag = args.pop(0)
        if flag == "--env":
            value = args.pop(0)
            pairs = [value.strip('"')] if value.count("=") == 1 else next(csv.reader([value]))
            env.update(pair.split("=", 1) for pair in pairs)
        elif flag in ("--bind", "-B"):  # src[:dest[:opts]], comma-separated, as singularity has it
            for spec in args.pop(0).split(","):
                parts = spec.split(":")
                if len(parts) > 3 or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
                    sys.exit(f"FATAL: bind {{spec}}: unknown option")
                if not os.path.exists(parts[0]):
                    sys.exit(f"FATAL: mount {{parts[0]}}: no such file or directory")
                binds.append((parts[0], parts[1] if len(parts) > 1 else parts[0]))
        elif flag not in ("--cleanenv", "--containall", "-e", "-c"):
            sys.exit(f"Error: unknown flag: {{flag}}")
    # No mount here: a variable that names a bound path inside names its source instead.
    for key, value in list(env.items()):
        for source, inside in binds:
            if value == inside or value.startswith(inside + "/"):
                env[key] = source + value[len(inside):]
    image, command = args[0], args[1:]
    if "://" not in image and not os.path.exists(image):
        sys.exit(f"FATAL: could not open image {{image}}: no such file")
    os.execvpe(command[0], command, env)
"""


class Fake:
    def __init__(self, tmp_path: Path, name: str = "singularity") -> None:
        self.calls_file = tmp_path / "calls.jsonl"
        self.binary = tmp_path / "bin" / name
        self.binary.parent.mkdir(exist_ok=True)
        self.binary.write_text(FAKE.format(python=sys.executable, log=str(self.calls_file)))
        self.binary.chmod(0o755)
        self.image = tmp_path / "busybox.sif"
        self.image.write_text("a local image")
        self.cache = tmp_path / "cache"

    def runtime(self, **options: Any) -> SingularityRuntime:
        return SingularityRuntime(binary=str(self.binary), cache_dir=self.cache, **options)

    def calls(self, verb: str) -> list[list[str]]:
        return [call["argv"] for call in self.processes(verb)]

    def processes(self, verb: str) -> list[dict[str, Any]]:
        """What each run of the stand-in for `verb` got: its argv, env and cwd."""
        lines = self.calls_file.read_text().splitlines() if self.calls_file.exists() else []
        return [call for call in map(json.loads, lines) if verb in call["argv"]]


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    return Fake(tmp_path)


def spec(container: str | Path, action: str | list[str], **env: str) -> JobSpec:
    job_id = f"sing-{uuid.uuid4().hex[:8]}"
    return JobSpec(job_id=job_id, attempt=4, action=action, container=str(container), env=env)


def read_pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def exists(path: Path) -> bool:
    return path.exists()


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


async def test_available_only_when_a_binary_is_found(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert not await SingularityRuntime().available()
    monkeypatch.setenv("PATH", str(fake.binary.parent))
    assert await SingularityRuntime().available()
    assert await fake.runtime().available()


async def test_without_a_binary_a_job_is_a_runtime_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeFailure, match="not installed"):
        await SingularityRuntime().run(spec("x.sif", "true"), Output(), grace_s=1)


async def test_the_command_line_is_exec_cleanenv_containall_env_image_sh_c(fake: Fake) -> None:
    job = spec(fake.image, "exit 3", GREETING="hi")
    assert await fake.runtime().run(job, Output(), grace_s=1) == 3
    env = ["--env", "GREETING=hi", "--env", f"ASPHALT_JOB_ID={job.job_id}"]
    env += ["--env", "ASPHALT_ATTEMPT=4", "--env", "ASPHALT_WORKER_ID="]
    head = [str(fake.binary), "--quiet", "exec", "--cleanenv", "--containall"]
    exec_ = [*head, *env, str(fake.image)]
    assert fake.calls("exec") == [[*exec_, "sh", "-c", "exit 3"]]


async def test_singularity_itself_gets_a_clean_env_and_a_fresh_directory(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKER_SECRET", "not for jobs")
    monkeypatch.setenv("ASPHALT_JOIN", "the-join-token")
    monkeypatch.setenv("SINGULARITY_BINDPATH", "/data")
    monkeypatch.setenv("LC_ALL", "C")
    root = tmp_path / "work"
    runtime = fake.runtime(env_allow=("SINGULARITY_*",), work_root=root)
    job = spec(fake.image, "true", GREETING="hi")
    assert await runtime.run(job, Output(), grace_s=1) == 0
    await runtime.close()  # its working directory is removed in the background
    [call] = fake.processes("exec")
    from_worker = set(call["env"]) - JOB_MARKERS
    assert "SINGULARITY_BINDPATH" in from_worker
    assert "LC_ALL" in from_worker
    assert not {"WORKER_SECRET", "ASPHALT_JOIN", "GREETING"} & from_worker  # GREETING: --env
    others = {n for n in from_worker if n not in BASIC_ENV and not n.startswith("LC_")}
    assert others == {"SINGULARITY_BINDPATH"}
    assert sorted(from_worker) == runtime.applied(job)["envAllowed"]
    cwd = Path(call["cwd"])
    assert cwd.parent == root and cwd.name.startswith(f"_+{job.job_id}-4-")
    assert not exists(cwd)


def test_applied_says_what_singularity_is_given(fake: Fake) -> None:
    applied = fake.runtime().applied(spec(fake.image, "true"))
    assert applied == {
        "runtime": "singularity",
        "cleanEnv": True,
        "containAll": True,
        "envAllowed": applied["envAllowed"],
        "workdir": "fresh",
        "pidsLimit": None,
        "memory": None,
        "cpus": None,
    }


async def test_the_job_sees_only_its_own_env(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_SECRET", "not for jobs")
    out = Output()
    await fake.runtime().run(spec(fake.image, ["env"], GREETING="hi"), out, grace_s=1)
    names = {line.split("=", 1)[0] for line in out.text.splitlines()}
    assert names == {"GREETING", "ASPHALT_JOB_ID", "ASPHALT_ATTEMPT", "ASPHALT_WORKER_ID"}


@pytest.mark.parametrize("binary", ["singularity", "apptainer"])
async def test_awkward_env_values_arrive_intact(tmp_path: Path, binary: str) -> None:
    awkward = {"A": "a,b", "B": 'say "hi"', "C": "x=1,y=2", "D": 'q="', "E": "", "F": "p=\r"}
    fake = Fake(tmp_path, binary)
    job = spec(fake.image, 'printf \'[%s]\\n\' "$A" "$B" "$C" "$D" "$E" "$F"', **awkward)
    out = Output()
    await fake.runtime().run(job, out, grace_s=1)
    assert out.text == "".join(f"[{value}]\n" for value in awkward.values())


def test_env_flags_fall_back_to_prefixed_variables_only_where_a_flag_cannot_carry_it() -> None:
    flags, prefixed = env_flags({"A": "1", "B": "x=y", "C": 'ends"'}, "SINGULARITYENV_")
    assert flags == ["--env", "A=1", "--env", '"B=x=y"']
    assert prefixed == {"SINGULARITYENV_C": 'ends"'}


async def test_output_reaches_the_sink_while_the_job_still_runs(fake: Fake) -> None:
    out = Output()
    job = spec(fake.image, "echo first; sleep 2; echo last >&2")
    run = asyncio.create_task(fake.runtime().run(job, out, grace_s=1))
    await asyncio.wait_for(out.first.wait(), 5)
    assert not run.done()
    assert await run == 0
    assert out.text == "first\nlast\n"


async def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(
    fake: Fake, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    action = f"trap '' TERM; sleep 100 & echo $! >{pids}; echo $$ >>{pids}; wait; wait"
    run = asyncio.create_task(fake.runtime().run(spec(fake.image, action), Output(), grace_s=0.5))
    for _ in range(200):
        if len(read_pids(pids)) == 2:
            break
        await asyncio.sleep(0.02)
    started = time.monotonic()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert 0.5 <= time.monotonic() - started < 60  # after the grace, not after the sleep
    assert not any(map(alive, read_pids(pids)))


async def test_a_docker_image_is_pulled_once_into_the_cache(fake: Fake) -> None:
    runtime = fake.runtime()
    for _ in range(2):
        await runtime.run(spec("docker://asphalt-test/busybox:1", "true"), Output(), grace_s=1)
    [pull] = fake.calls("pull")
    assert pull[-1] == "docker://asphalt-test/busybox:1"
    [cached] = fake.cache.iterdir()
    assert cached.read_text() == "docker://asphalt-test/busybox:1"
    assert [call[-4] for call in fake.calls("exec")] == [str(cached), str(cached)]


async def test_a_bare_name_is_a_docker_image(fake: Fake) -> None:
    await fake.runtime().run(spec("asphalt-test/busybox", "true"), Output(), grace_s=1)
    assert fake.calls("pull")[0][-1] == "docker://asphalt-test/busybox"


async def test_an_image_that_cannot_be_pulled_is_not_found_and_not_cached(fake: Fake) -> None:
    with pytest.raises(RuntimeFailure, match="image not found: docker://nowhere/missing"):
        await fake.runtime().run(spec("docker://nowhere/missing", "true"), Output(), grace_s=1)
    assert not fake.calls("exec")
    assert list(fake.cache.iterdir()) == []


async def test_a_missing_local_image_is_not_found(fake: Fake, tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure, match=r"image not found: .*/missing\.sif"):
        await fake.runtime().run(spec(tmp_path / "missing.sif", "true"), Output(), grace_s=1)


async def test_artifact_directories_are_bound_read_write(fake: Fake, tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    job = spec(fake.image, 'echo kept > "$ASPHALT_RESULTS_DIR/args.json"')
    job = replace(
        job, env={**job.env, "ASPHALT_RESULTS_DIR": "/results"}, mounts={"/results": results}
    )
    assert await fake.runtime().run(job, Output(), grace_s=1) == 0
    argv = fake.calls("exec")[0]
    assert argv[argv.index("--bind") + 1] == f"{results}:/results:rw"
    assert argv.index("--bind") < argv.index(str(fake.image))
    assert (results / "args.json").read_text() == "kept\n"
    gone = replace(job, mounts={"/results": tmp_path / "not-there"})
    with pytest.raises(RuntimeFailure, match="bind"):
        await fake.runtime().run(gone, Output(), grace_s=1)


async def test_a_worker_finds_the_binary_and_caches_pulls_under_its_state_directory(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{fake.binary.parent}:/usr/bin:/bin")
    state = tmp_path / "state"
    runtimes = await detect_runtimes(docker_network="none", state_dir=state)
    try:
        found = [r for r in runtimes if isinstance(r, SingularityRuntime)]
        assert len(found) == 1 and found[0].cache_dir == state / "singularity-cache"
        job = spec("docker://asphalt-test/busybox", "true")
        assert await found[0].run(job, Output(), grace_s=1) == 0
        assert [p.parent for p in (state / "singularity-cache").glob("*.sif")] == [
            state / "singularity-cache"
        ]
    finally:
        for runtime in runtimes:
            await runtime.close()
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no binary: not advertised
    runtimes = await detect_runtimes(docker_network="none", state_dir=state)
    try:
        assert "singularity" not in [r.name for r in runtimes]
    finally:
        for runtime in runtimes:
            await runtime.close()
