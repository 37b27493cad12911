"""The throwaway PostgreSQL server the store tests run on (tests/pg_server.py, conftest fixtures)."""

from __future__ import annotations

from typing import Any

import pytest

psycopg = pytest.importorskip("psycopg")  # the pg_server fixture itself fails with CI=true when it is missing


def test_each_test_database_is_fresh_and_empty(pg_server: Any, pg_url: str) -> None:
    other = pg_server.create_database("other")
    try:
        assert other != pg_url and other.startswith("postgresql://")
        with psycopg.connect(pg_url) as con:
            con.execute("CREATE TABLE t (x int)")
        with psycopg.connect(other) as con:
            assert con.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
            # SQLite compares text by bytes; so does the test server (C collation, UTF-8)
            assert con.execute("SELECT current_setting('lc_collate'), pg_client_encoding()").fetchone() == ("C", "UTF8")
    finally:
        pg_server.drop_database(other)


def test_restart_drops_connections_and_keeps_data(pg_server: Any, pg_url: str) -> None:
    if not pg_server.owned:
        pytest.skip("PERF_ALERTS_TEST_PG names a server this run did not start: it is not restarted")
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("CREATE TABLE t (x int)")
        con.execute("INSERT INTO t VALUES (1)")
        pg_server.restart()
        with pytest.raises(psycopg.OperationalError):
            con.execute("SELECT 1")
    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_store_url_names_one_backend_per_variant(store_url: str, new_store_url: Any, request: pytest.FixtureRequest) -> None:
    backend = request.node.callspec.params["store_url"]
    assert store_url.startswith("postgresql://") == (backend == "postgresql")
    second = new_store_url()
    assert second != store_url and second.startswith("postgresql://") == (backend == "postgresql")
