"""The singularity runtime: `singularity exec --cleanenv --containall` per job (the one importer
of spython)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from spython.main import get_client

from .base import (
    DEFAULT_PATH,
    JobSpec,
    OutputSink,
    RuntimeFailure,
    check_env_allow,
    passed_env,
    worker_env,
)
from .host import (
    NONE_ENFORCED,
    job_env,
    reap_processes,
    run_process,
)
from .host_cgroup import CgroupPool
from .outputs_file import IN_CONTAINER, IN_CONTAINER_DIR
from .workdirs import WorkDirs

# The URI schemes `singularity pull` (and spython) accept; images named so are pulled to the
# cache once and run from there. Other schemes (docker-daemon://, oci-archive://...) go
# straight to `exec`, and a name with no scheme is a docker image, as in the docker runtime.
_PULLED = ("docker", "library", "shub", "oras", "https")
_PATHLIKE = re.compile(r"^(/|\./|\.\./|~)|\.(sif|simg|img)$")


class SingularityRuntime:
    """Runs each job as `sh -c ACTION` (or an argv) with `singularity exec --cleanenv
    --containall IMAGE`; the singularity process itself gets a clean environment too."""

    name = "singularity"

    def __init__(
        self,
        *,
        binary: str | None = None,
        cache_dir: Path | str | None = None,
        env_allow: Iterable[str] = (),
        work_root: Path | None = None,
        cgroups: bool = False,
    ) -> None:
        self._binary = binary or shutil.which("singularity") or shutil.which("apptainer")
        self._cache_dir = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
        self._pulls: dict[str, asyncio.Lock] = {}
        self._env_allow = check_env_allow(env_allow)
        self._dirs = WorkDirs(work_root)
        # With cgroups, its jobs are measured in groups of their own, where one can be made.
        self._groups = CgroupPool() if cgroups else None

    @property
    def cache_dir(self) -> Path:
        """Where pulled images are kept (one file per image URI)."""
        return self._cache_dir

    async def available(self) -> bool:
        return self._binary is not None and os.access(self._binary, os.X_OK)

    def applied(self, spec: JobSpec) -> dict[str, Any]:
        # What the singularity process gets from the worker; the job in the container gets only
        # its own env (--cleanenv).
        _, prefixed = self._env(spec)
        passed = passed_env(worker_env(self._env_allow), prefixed, job_env(spec))
        applied = {"runtime": "singularity", "cleanEnv": True, "containAll": True}
        return {**applied, "envAllowed": passed, "workdir": "fresh", **NONE_ENFORCED}

    async def run(self, spec: JobSpec, sink: OutputSink, *, grace_s: float) -> int:
        if self._binary is None:
            raise RuntimeFailure("singularity (or apptainer) is not installed on this worker")
        if not spec.container:
            raise RuntimeFailure("the singularity runtime needs a container image")
        image = await self._image(spec.container)
        command = ["sh", "-c", spec.action] if isinstance(spec.action, str) else spec.action
        argv = self.command_line(spec, image, command)
        # The markers go on singularity's own process too, so its whole tree can be found.
        _, prefixed = self._env(spec)
        env = {"PATH": DEFAULT_PATH, **worker_env(self._env_allow), **prefixed, **job_env(spec)}
        async with self._dirs.fresh(spec) as cwd:
            return await run_process(
                argv, env=env, cwd=cwd, spec=spec, sink=sink, grace_s=grace_s, groups=self._groups
            )

    def command_line(self, spec: JobSpec, image: str, command: list[str]) -> list[str]:
        """`singularity exec --cleanenv --containall`, the job's env, its binds (the outputs
        file's directory, where a docker job finds it too; the artifact directories), the
        image and the command, as spython's client puts an exec together."""
        assert self._binary is not None
        flags, _ = self._env(spec)
        binds = [f"{spec.outputs.path.parent}:{IN_CONTAINER_DIR}"] if spec.outputs else []
        for inside, path in spec.mounts.items():
            if {",", ":"} & set(f"{inside}{path}"):  # separators in a bind: never passed on
                raise RuntimeFailure(f"cannot bind {inside!r}: a path with ',' or ':'")
            binds.append(f"{path}:{inside}:rw")
        client = _spython(self._binary)
        head: list[str] = client._init_command("exec", [])
        try:
            bound: list[str] = client._generate_bind_list(binds)
        except SystemExit as e:  # spython exits when a bind's source is not there
            raise RuntimeFailure(f"a directory to bind into the container is gone: {e}") from e
        return [*head, "--cleanenv", "--containall", *flags, *bound, image, *command]

    async def close(self) -> None:
        """Wait for the working directories of ended jobs to be removed."""
        await self._dirs.close()
        if self._groups is not None:
            self._groups.close()

    async def reap(self, worker_id: str) -> list[str]:
        """Its jobs are host processes (singularity exec), found and ended like host jobs."""
        return await asyncio.to_thread(reap_processes, worker_id, self._dirs)

    async def _image(self, container: str) -> str:
        """The image argument for `exec`: a local path, or what a pull put in the cache."""
        uri = await asyncio.to_thread(_resolve, container)
        if "://" not in uri or uri.split("://", 1)[0] not in _PULLED:
            return uri
        target = self._cache_dir / _cache_name(uri)
        # One pull per image at a time; the jobs that waited find it in the cache.
        async with self._pulls.setdefault(uri, asyncio.Lock()):
            await asyncio.to_thread(self._pull, uri, target)
        return str(target)

    def _pull(self, uri: str, target: Path) -> None:
        """Pull uri to target with spython (in a thread); a partial pull is never in the cache."""
        assert self._binary is not None
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")
        try:
            _spython(self._binary).pull(
                uri, name=partial.name, pull_folder=str(target.parent), capture=True, quiet=True
            )
            if not partial.is_file():  # spython does not report a failed pull
                raise RuntimeFailure(f"image not found: {uri}")
            partial.replace(target)
        except (OSError, SystemExit) as e:  # spython exits the process on some errors
            raise RuntimeFailure(f"image not found: {uri}") from e
        finally:
            partial.unlink(missing_ok=True)

    def _env(self, spec: JobSpec) -> tuple[list[str], dict[str, str]]:
        """The job's env as `--env` flags, and as variables for what a flag cannot carry."""
        apptainer = "apptainer" in Path(self._binary or "").name
        prefix = "APPTAINERENV_" if apptainer else "SINGULARITYENV_"
        outputs = spec.outputs.env(IN_CONTAINER) if spec.outputs is not None else {}
        env = {**spec.env, **job_env(spec), **outputs}
        secret = set(spec.secret_names)
        # A secret goes in a variable, never in argv, where any user of the box could read it.
        flags, prefixed = env_flags({k: v for k, v in env.items() if k not in secret}, prefix)
        prefixed |= {prefix + k: v for k, v in env.items() if k in secret}
        return flags, prefixed


def env_flags(env: Mapping[str, str], prefix: str) -> tuple[list[str], dict[str, str]]:
    """`--env K=V` flags for env, and `{prefix}K` variables for what a flag cannot carry.

    singularity parses `--env` with pflag's string-to-string flag: one `=` is taken as is
    (after trimming `"` from both ends), two or more make it read the value as a CSV record.
    """
    flags: list[str] = []
    prefixed: dict[str, str] = {}
    for key, value in env.items():
        pair = f"{key}={value}"
        if "=" not in value and not value.endswith('"') and not key.startswith('"'):
            flags += ["--env", pair]
        elif "=" in value and "\r" not in pair:
            flags += ["--env", '"' + pair.replace('"', '""') + '"']
        else:
            prefixed[prefix + key] = value
    return flags, prefixed


def _resolve(container: str) -> str:
    """A local image's path, or a URI: a bare name is a docker image, as for docker jobs."""
    if "://" in container:
        return container
    path = Path(container).expanduser()
    if path.exists():
        return str(path)
    if _PATHLIKE.search(container):
        raise RuntimeFailure(f"image not found: {container}")
    return f"docker://{container}"


def _spython(binary: str) -> Any:
    """A spython client that runs `binary` (spython itself always runs `singularity`)."""
    client = get_client(quiet=True)

    def command(action: str | list[str], flags: list[str] | None = None) -> list[str]:
        return [
            binary,
            "--quiet",
            *(flags or []),
            *([action] if isinstance(action, str) else action),
        ]

    client._init_command = command
    return client


def _cache_name(uri: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", uri.split("://", 1)[1])[-80:]
    return f"{readable}-{hashlib.sha256(uri.encode()).hexdigest()[:12]}.sif"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "asphalt" / "singularity"
