"""A job's artifacts for people: the list (path, size, sha256), one file, or all of them as a
tar.gz; of the current attempt, or ?attempt=N."""

from __future__ import annotations

from aiohttp import web

from asphalt.errors import BadRequest
from asphalt.master.artifacts import Artifacts
from asphalt.master.http.common import SCHEDULER, reply
from asphalt.model.bodies import ArtifactsQuery, read_query
from asphalt.model.records import Job

ARTIFACTS = web.AppKey("artifacts", Artifacts)
routes = web.RouteTableDef()


def _job(request: web.Request) -> tuple[Artifacts, Job, int]:
    job = request.config_dict[SCHEDULER].tasks.job(request.match_info["job"])
    given = read_query(request.query, ArtifactsQuery).attempt
    if given is not None and not 1 <= given <= job.attempt:
        raise BadRequest(f"attempt must be a number from 1 to {job.attempt}", field="attempt")
    return request.config_dict[ARTIFACTS], job, given or job.attempt


@routes.get("/jobs/{job}/artifacts", name="artifacts")
async def list_artifacts(request: web.Request) -> web.StreamResponse:
    artifacts, job, attempt = _job(request)
    if read_query(request.query, ArtifactsQuery).archive == "tar.gz":
        response = web.StreamResponse(
            headers={"Content-Disposition": f'attachment; filename="{job.id}-{attempt}.tar.gz"'}
        )
        response.content_type = "application/gzip"
        await response.prepare(request)
        async for data in artifacts.archive(job, attempt):
            await response.write(data)
        await response.write_eof()
        return response
    found = artifacts.listed(job, attempt)
    return reply(
        {
            "job": job.id,
            "attempt": attempt,
            "artifacts": [a.view(job.id, attempt) for a in found],
            "archiveUrl": f"/jobs/{job.id}/artifacts?attempt={attempt}&archive=tar.gz",
        }
    )


@routes.get("/jobs/{job}/artifacts/{path:.+}", name="artifact")
async def download_artifact(request: web.Request) -> web.StreamResponse:
    artifacts, job, attempt = _job(request)
    artifact = artifacts.found(job, attempt, request.match_info["path"])
    name = artifact.path.rsplit("/", 1)[-1].replace('"', "")
    response = web.StreamResponse(
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Length": str(artifact.size),
            "X-Content-Type-Options": "nosniff",
            "Digest": f"sha-256={artifact.sha256}",
        }
    )
    response.content_type = "application/octet-stream"
    await response.prepare(request)
    for data in artifacts.pieces(job, attempt, artifact.path):
        await response.write(data)
    await response.write_eof()
    return response
