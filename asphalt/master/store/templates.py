"""The templates table: name, version -> one version of a template (written through
`Store.change`); every version is kept until the template is deleted."""

from __future__ import annotations

import struct

from asphalt.master.store import keys, records
from asphalt.master.store.migrations import Tables
from asphalt.model.templates import Template


def _key(name: str, version: int) -> bytes:
    return name.encode() + keys.SEP + struct.pack(">I", version)


def put(tables: Tables, template: Template) -> None:
    tables.put("templates", _key(template.name, template.version), records.pack(template))


def versions(tables: Tables, name: str) -> list[Template]:
    """Every version of the template, oldest first."""
    prefix = name.encode() + keys.SEP
    return [records.decode(raw, Template) for raw in tables.scan("templates", prefix)]


def every(tables: Tables) -> list[Template]:
    """Every version of every template, by name and then version."""
    return [records.decode(raw, Template) for _, raw in tables.items("templates")]


def _last_key(name: str) -> bytes:
    return b"template-last" + keys.SEP + name.encode()


def delete(tables: Tables, name: str) -> int:
    """Remove every version of the template; how many there were. Its last version number is
    kept, so a template made again under the name goes on from there: a job's (name, version)
    always means the one it ran."""
    found = versions(tables, name)
    for template in found:
        tables.delete("templates", _key(name, template.version))
    if found:
        tables.put("meta", _last_key(name), records.pack_value(found[-1].version))
    return len(found)


def last_deleted(tables: Tables, name: str) -> int:
    """The last version of a template of this name that was deleted (0: none was)."""
    raw = tables.get("meta", _last_key(name))
    return int(records.unpack_value(raw)) if raw is not None else 0
