"""Schemathesis against /openapi.json of the real server: no 5xx, every response as documented.

Seeded (Hypothesis `derandomize`), so a failure reproduces: rerun and the same cases come.
Both valid (positive) and invalid (negative) requests are generated for every operation.
Path ids are steered half of the time to records that exist, so that the fuzzer gets past
the 404s; DELETE keeps its random ids so that the seeded records survive the run.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fixtures.factories import create_annotation, create_group, group_url, make_masks, put_all
from fixtures.server import ServerProcess, make_token

# Examples per operation on the embedded default (SQLite + local store), where validation,
# the bulk of what a fuzzer finds, is exercised; the PostgreSQL kinds (the same validation,
# plus the database's own limits: BIGINT ids, NUL bytes, lengths) take half as many: each
# kind's 80 took 77-113 s of a (loaded) `make test` here, ~12 % of the suite.
EXAMPLES_PER_OPERATION = {"sqlite": 80, "postgres": 40, "postgres-rgw": 40}
MIN_CASES = {"sqlite": 1000, "postgres": 500, "postgres-rgw": 500}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def _seed_records(server: ServerProcess) -> dict[str, int]:
    with server.client("fuzzer") as c:
        masks = make_masks(2)
        annotation = create_annotation(c)
        group = create_group(c, annotation["id"], masks)
        put_all(group["uploads"], masks)
        c.post(f"{group_url(annotation['id'], group['id'])}/complete").raise_for_status()
        mask = c.get(f"{group_url(annotation['id'], group['id'])}/masks").json()["items"][0]
    return {"annotation_id": annotation["id"], "group_id": group["id"], "mask_id": mask["id"]}


def _steer_ids(case: Any, known: dict[str, int]) -> None:
    params = case.path_parameters
    if not params or case.method.upper() == "DELETE":
        return
    for name, value in known.items():
        # Decided by the generated value itself, so a seed replays the same requests.
        if isinstance(params.get(name), int) and params[name] % 2 == 0:
            params[name] = value


def test_every_operation_conforms_to_the_schema(
    server: ServerProcess, request: pytest.FixtureRequest
) -> None:
    kind = request.node.callspec.id
    known = _seed_records(server)
    headers = {"Authorization": f"Bearer {make_token('fuzzer', ttl=6 * 3600)}"}
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    cases = 0
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:
        strategy = st.one_of(
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES_PER_OPERATION[kind],
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            nonlocal cases
            cases += 1
            _steer_ids(case, known)
            case.call_and_validate(
                base_url=server.url, headers=headers, checks=CHECKS, allow_redirects=False
            )

        try:
            run()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # collect every operation's failures, then report all
            failures[operation.label] = str(exc)[:3000]

    assert not failures, "\n\n".join(f"== {k}\n{v}" for k, v in failures.items())
    print(f"fuzzing: {cases} cases over {len(operations)} operations")
    assert cases >= MIN_CASES[kind]
