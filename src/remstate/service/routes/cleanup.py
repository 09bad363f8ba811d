"""``POST /api/v1/cleanup``: the manual cleanup trigger, on the leader only.

Design constraint: one replica cleans at a time, the leader; another refuses
with 409 ``not-leader`` and names the leader, so a client (or an operator)
knows where to send it. The same ``delete`` verb governs it as ``kubectl
delete`` would the ConfigMaps it removes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from remstate.schema.durations import parse_duration
from remstate.service.deps import API_PREFIX, BODY, COMMON, Services, allow, services
from remstate.service.models import Cleanup
from remstate.service.problems import NotLeader, responses

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["cleanup"])


@router.post(
    "/cleanup",
    dependencies=[allow("list", "delete")],
    responses=responses(400, 409, *BODY, *COMMON),
)
def cleanup(body: Cleanup, s: Services = Depends(services)) -> dict[str, Any]:  # noqa: B008
    """Run the cleanup now: soft-delete what outlived its ttl, purge what outlived its grace.

    ``dry_run`` reports what it would do and writes nothing; ``force`` also
    takes tasks in progress or awaiting review. The report lists each decision.
    """
    if not s.leadership.is_leader():
        raise NotLeader(s.leadership.holder())
    options = dict(s.cleanup_defaults)
    if body.ttl is not None:
        options["ttl"] = parse_duration(body.ttl)
    if body.grace is not None:
        options["grace"] = parse_duration(body.grace)
    report = s.manager.cleanup_old_states(
        dry_run=body.dry_run, force=body.force, keep_going=s.leadership.is_leader, **options
    )
    return report.to_dict()
