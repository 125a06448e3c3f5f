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


def delete(tables: Tables, name: str) -> int:
    """Remove every version of the template; how many there were."""
    found = list(tables.keys("templates", name.encode() + keys.SEP))
    for key in found:
        tables.delete("templates", key)
    return len(found)
