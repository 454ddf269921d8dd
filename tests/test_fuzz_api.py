"""Schemathesis against /openapi.json of the real server: no 5xx, every response as documented.

Seeded (Hypothesis `derandomize`), so a failure reproduces: rerun and the same cases come.
Both valid (positive) and invalid (negative) requests are generated for every operation.
Path ids are steered half of the time to records that exist, so that the fuzzer gets past
the 404s; DELETE keeps its random ids so that the seeded records survive the run.

Every generated case is sent to each `server` kind (SQLite + local store, PostgreSQL + local
store, PostgreSQL + Ceph RGW): generating the cases is most of the cost (Hypothesis drawing
from the schema), so one generation serves all three, and every kind gets the full number.
"""

from __future__ import annotations

import traceback
from typing import Any

import httpx
import pytest
import requests
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

# Each case goes to every kind: the validation (the bulk of what a fuzzer finds) and, on
# PostgreSQL, the database's own limits (BIGINT ids, NUL bytes, lengths).
KINDS = ("sqlite", "postgres", "postgres-rgw")
EXAMPLES_PER_OPERATION = 80
MIN_CASES = 1000
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


@pytest.mark.postgres
@pytest.mark.rgw
def test_every_operation_conforms_to_the_schema(server_pool: Any) -> None:
    servers: dict[str, ServerProcess] = {kind: server_pool.get(kind) for kind in KINDS}
    known = {kind: _seed_records(srv) for kind, srv in servers.items()}
    documents = {kind: httpx.get(f"{srv.url}/openapi.json").json() for kind, srv in servers.items()}
    assert all(doc == documents["sqlite"] for doc in documents.values()), "kinds differ"
    headers = {"Authorization": f"Bearer {make_token('fuzzer', ttl=6 * 3600)}"}
    schema = schemathesis.openapi.from_dict(documents["sqlite"])
    # One kept-alive connection per server, as a client would hold (not one per case).
    sessions = {kind: requests.Session() for kind in KINDS}
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
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            nonlocal cases
            cases += 1
            generated = dict(case.path_parameters or {})
            for kind, srv in servers.items():
                if generated:
                    case.path_parameters = dict(generated)
                _steer_ids(case, known[kind])
                try:
                    case.call_and_validate(
                        base_url=srv.url,
                        session=sessions[kind],
                        headers=headers,
                        checks=CHECKS,
                        allow_redirects=False,
                    )
                except Exception as exc:
                    exc.add_note(f"on the {kind} server")
                    raise

        try:
            run()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # collect every operation's failures, then report all
            failures[operation.label] = "".join(traceback.format_exception_only(exc))[:3000]

    for session in sessions.values():
        session.close()
    assert not failures, "\n\n".join(f"== {k}\n{v}" for k, v in failures.items())
    print(f"fuzzing: {cases} cases over {len(operations)} operations, each on {len(KINDS)} kinds")
    assert cases >= MIN_CASES
