"""Every pooled database connection in use for longer than database.pool_timeout_seconds: the
request is a 503 that names the setting, not a 500 (SQLAlchemy's pool raises its own
TimeoutError, which no handler took before)."""

from __future__ import annotations

from fixtures.inprocess import AppFactory


async def test_a_request_that_finds_no_free_connection_is_a_503_naming_the_setting(
    make_app: AppFactory,
) -> None:
    app = await make_app(database={"pool_timeout_seconds": 0.2})
    engine = app.app.state.engine
    pool = engine.sync_engine.pool
    held = [await engine.connect() for _ in range(pool.size() + pool._max_overflow)]
    try:
        async with app.client("alice") as alice:
            r = await alice.get("/api/annotations")
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "DatabaseUnavailable"
        assert "database.pool_timeout_seconds" in r.json()["detail"]
    finally:
        for conn in held:
            await conn.close()
    async with app.client("alice") as alice:
        assert (await alice.get("/api/annotations")).status_code == 200
