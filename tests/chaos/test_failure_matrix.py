"""The failure matrix (perf/chaos) at smoke size: every case runs real servers on loopback,
drives steady fans through the HTTP APIs, injects its fault, and must end with every invariant
holding (`make chaos-smoke`; `make chaos` runs the same cases longer and writes the figures).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from perf.chaos.cases import CASES, SMOKE, Case
from perf.chaos.runner import run_case

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_after_the_fault_no_accepted_work_is_lost_and_every_invariant_holds(
    case: Case, tmp_path: Path
) -> None:
    figures = await run_case(case, tmp_path, SMOKE)
    assert figures["checks"] == {name: [] for name in figures["checks"]}
    assert figures["accepted_lost"] == 0
    if not case.may_lose_tokens:  # where it may, the figures name each token lost
        assert figures["tokens_lost"] == 0
    assert figures["server_errors_5xx"] == 0  # refusals are 503s with Retry-After, never a 500
    assert figures["accepted_202"] > 0 and figures["confirmed"] > 0  # the load did flow
