"""The rules in DESIGN.md §3 that keep Asphalt easy to change, checked on every run."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "asphalt"
# Each third-party library is imported in one module only.
OWNERS = {
    "lmdb": "asphalt/master/store/batch.py",
    "msgpack": "asphalt/master/store/records.py",
    "docker": "asphalt/worker/runtimes/engine.py",
    "spython": "asphalt/worker/runtimes/singularity.py",
    "zeroconf": "asphalt/discovery.py",
    "cryptography": "asphalt/tls.py",
    "prometheus_client": "asphalt/master/metrics.py",
    "cronsim": "asphalt/model/schedules.py",
    "jsonschema": "asphalt/model/templates.py",
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules() -> list[tuple[str, set[str]]]:
    return [(str(p.relative_to(ROOT)), _imports(p)) for p in sorted(PACKAGE.rglob("*.py"))]


def test_dependencies_point_inward() -> None:
    for path, names in _modules():
        if path.startswith("asphalt/worker/"):
            assert not any(n.startswith(("asphalt.master", "asphalt.web")) for n in names), path
        if path.startswith(("asphalt/master/", "asphalt/web/")):
            assert not any(n.startswith("asphalt.worker") for n in names), path
        if path in (
            "asphalt/model/records.py",
            "asphalt/protocol.py",
            "asphalt/model/bodies.py",
            "asphalt/config.py",
            "asphalt/errors.py",
        ):
            assert not any(
                n.startswith(("asphalt.master", "asphalt.worker", "asphalt.web")) for n in names
            ), path


def test_each_library_is_imported_in_one_module() -> None:
    for path, names in _modules():
        for library, owner in OWNERS.items():
            if any(n == library or n.startswith(library + ".") for n in names):
                assert path == owner, f"{path} imports {library}; only {owner} may"


def test_modules_stay_short_and_say_what_they_own() -> None:
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text().splitlines()
        assert len(lines) <= 400, f"{path} has {len(lines)} lines; split it by what it owns"
        if path.name != "__init__.py" or lines:
            assert ast.get_docstring(ast.parse(path.read_text())), (
                f"{path} needs a module docstring"
            )


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "asphalt", "tests"],
        ["ruff", "format", "--check", "asphalt", "tests"],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_lint_and_types_are_clean(command: list[str]) -> None:
    beside = Path(sys.executable).parent / command[0]
    exe = str(beside) if beside.exists() else shutil.which(command[0])
    assert exe, f"{command[0]} is not installed: pip install -e '.[test]'"
    result = subprocess.run(
        [exe, *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _calls(path: Path) -> list[tuple[str, str]]:
    """(receiver, method) of every call like `x.store.save(...)` or `store.save(...)`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
            receiver = (
                target.attr
                if isinstance(target, ast.Attribute)
                else target.id
                if isinstance(target, ast.Name)
                else ""
            )
            found.append((receiver, node.func.attr))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            found.append(("", node.func.id))
    return found


def test_one_door_for_job_state_changes_and_events_only_after_it() -> None:
    door = "asphalt/master/core/lifecycle.py"
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(ROOT))
        if where.startswith("asphalt/master/store/"):
            continue
        for receiver, method in _calls(path):
            if receiver in ("store", "_store") and method in ("save", "create_task"):
                assert where == door, f"{where} saves jobs itself; go through {door}"
            if method == "check_transition":
                assert where == door, f"{where} checks a transition; only {door} may"
            if method == "publish":
                assert where == door, f"{where} publishes an event; only {door} may"
    # The core, the read model, the events and the records never speak HTTP or draw pages.
    inner = [
        *(PACKAGE / "master" / "core").rglob("*.py"),
        *(PACKAGE / "model").rglob("*.py"),
        PACKAGE / "master" / "events.py",
        PACKAGE / "master" / "views.py",
    ]
    assert len(inner) > 15
    for path in inner:
        names = _imports(path)
        assert not any(
            n.startswith(("aiohttp", "asphalt.web", "asphalt.master.http.common")) for n in names
        ), path
    # Events are handed to subscribers only once the store has committed (Events.publish).
    source = (PACKAGE / "master" / "events.py").read_text()
    assert "self._after_commit(lambda: self._deliver(event))" in source


# The core's services, lowest first: each may use the ones before it, never one after it.
SERVICES = ("dispatch", "tasks", "leasing", "membership", "views")


def test_the_core_is_composed_services_that_depend_one_way() -> None:
    for i, name in enumerate(SERVICES):
        path = _service(name)
        above = {_module(_service(later)) for later in (*SERVICES[i + 1 :], "scheduler")}
        assert not _imports(path) & above, f"{name} uses a service built on it"
    for path in sorted((PACKAGE / "master").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):  # no mixins: a service is handed what it uses
                bases = [ast.unparse(b) for b in node.bases]
                asphalt_bases = [b for b in bases if b.split("[")[0] not in PLAIN_BASES]
                assert not asphalt_bases, f"{path}: {node.name} inherits {asphalt_bases}"


def _service(name: str) -> Path:
    """Where a service lives: the core's in master/core/, the read model beside it."""
    core = PACKAGE / "master" / "core" / f"{name}.py"
    return core if core.exists() else PACKAGE / "master" / f"{name}.py"


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


# Plain types, and a library's interface that it asks its users to implement (aiohttp's resolver).
PLAIN_BASES = frozenset(
    {"Enum", "StrEnum", "Exception", "Generic", "NamedTuple", "Protocol", "TypedDict"}
    | {"AbstractResolver"}
)


def test_no_module_reaches_into_another_modules_internals() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("asphalt")
            ):
                private = [a.name for a in node.names if _private(a.name)]
                assert not private, f"{path} imports {private} from {node.module}"
            if (
                isinstance(node, ast.Attribute)
                and _private(node.attr)
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                and ast.unparse(node) not in OTHERS_INTERNALS
            ):
                raise AssertionError(f"{path}:{node.lineno} reaches into .{node.attr} of another")


# Not Asphalt's: the standard library's one way out without cleanup, and spython's command
# builder and bind list (asphalt/worker/runtimes/singularity.py says why).
OTHERS_INTERNALS = frozenset({"os._exit", "client._init_command", "client._generate_bind_list"})


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")
