"""How the store's tables key their records: shared by the modules that write them."""

from __future__ import annotations

import struct

from asphalt.model.records import Task

SEP = b"\x00"


def task_key(project: str, task: str) -> bytes:
    return project.encode() + SEP + task.encode()


def order_key(task: Task) -> bytes:
    created_ns = int(task.created_at * 1e9)
    return task.project.encode() + SEP + struct.pack(">Q", created_ns) + task.id.encode()


def output_prefix(job_id: str, attempt: int) -> bytes:
    return job_id.encode() + SEP + struct.pack(">I", attempt)
