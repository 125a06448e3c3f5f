"""The worker's uploader against a real master: pieces of both streams go up as frames, each
body within what the master takes, however the job switches between stdout and stderr."""

from __future__ import annotations

from harness import REG, MasterFactory

from asphalt.protocol import STDERR, STDOUT
from asphalt.worker.client import MasterClient
from asphalt.worker.uploader import Uploader


async def test_output_switching_streams_byte_by_byte_goes_up_whole(master: MasterFactory) -> None:
    m = await master(lease_s=60.0, heartbeat_s=10.0)  # no heartbeat is sent: the lease must last
    async with MasterClient(m.url, join=m.join) as client:
        worker = (await client.register(REG)).worker
        await m.new_task({"main": {"action": "x"}})
        lease = await client.lease(worker)
        assert lease is not None
        up = Uploader(client, worker, lease.job, 1, flush_bytes=64 << 10)
        # Each byte its own frame: five bytes of header for one of output.
        for i in range(300_000):
            await up.write(b"o" if i % 2 == 0 else b"e", STDOUT if i % 2 == 0 else STDERR)
        assert await up.flush()
        url = f"{m.url}/jobs/{lease.job}/output"
        async with m.session.get(url, params={"stream": "stderr"}) as r:
            got = await r.read()
            assert len(got) == 150_000 and set(got) == {ord("e")}, (len(got), got[:200])
        async with m.session.get(url) as r:
            assert await r.read() == b"oe" * 150_000
