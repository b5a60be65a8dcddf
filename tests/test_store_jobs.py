"""Job records (OGC API - Processes) in the store, on both backends: a job is
created, runs and finishes; a dismissed job ignores a worker's late progress;
a finished result answers the same request again; an old store gains the table."""

from __future__ import annotations

import sqlite3

import pytest

from geo_service.errors import Conflict, InvalidParameter
from geo_service.store import JobRecord, open_store
from tests.conftest import TEST_PG


def _at(minute: int) -> str:
    return f"2000-01-01T10:{minute:02d}:00.000+00:00"


def _job(job_id: str, minute: int, **fields) -> JobRecord:
    values = {
        "process": "atlas",
        "status": "accepted",
        "inputs": '{"towns":["370303001"]}',
        "cache_key": "atlas:v1",
        "actor": "office",
        "created": _at(minute),
        "updated": _at(minute),
    }
    values.update(fields)
    return JobRecord(id=job_id, **values)


def test_a_job_runs_finishes_and_its_result_can_be_dropped(empty_store):
    store = empty_store
    store.create_job(_job("job-1", 0))
    assert store.job("job-1") == _job("job-1", 0)
    assert store.job("job-none") is None
    assert store.job_result("job-1") is None

    assert store.update_job(
        "job-1", status="running", started=_at(1), owner="host-a:4242", progress=10
    )
    running = store.job("job-1")
    assert (running.status, running.progress, running.owner) == ("running", 10, "host-a:4242")
    assert running.started == _at(1) and running.updated > _at(1)  # updated is now

    pdf = b"%PDF-1.7\n\x00\xff binary \x00"
    assert store.update_job(
        "job-1",
        status="successful",
        progress=100,
        finished=_at(2),
        message="13 pages",
        result=pdf,
        result_media="application/pdf",
    )
    done = store.job("job-1")
    assert done.status == "successful" and done.has_result and done.message == "13 pages"
    assert store.job_result("job-1") == (pdf, "application/pdf")

    assert store.delete_job_result("job-1")
    assert store.job_result("job-1") is None
    assert store.job("job-1").has_result is False
    assert store.job("job-1").status == "successful"  # the record stays
    assert not store.delete_job_result("job-none")


def test_a_dismissed_job_ignores_a_workers_late_progress(empty_store):
    store = empty_store
    store.create_job(_job("job-1", 0, status="running", progress=30))
    assert store.update_job("job-1", status="dismissed", expect=("accepted", "running"))
    # The worker has not noticed yet: its progress and its result change nothing.
    assert not store.update_job("job-1", progress=60, expect=("running",))
    assert not store.update_job(
        "job-1", status="successful", result=b"late", result_media="text/plain", expect=["running"]
    )
    job = store.job("job-1")
    assert (job.status, job.progress, job.has_result) == ("dismissed", 30, False)
    assert not store.update_job("job-none", progress=1)


def test_job_fields_and_statuses_are_checked(empty_store):
    store = empty_store
    store.create_job(_job("job-1", 0))
    with pytest.raises(Conflict):
        store.create_job(_job("job-1", 1))
    with pytest.raises(InvalidParameter, match="not a job status"):
        store.create_job(_job("job-2", 1, status="done"))
    with pytest.raises(InvalidParameter, match="not a job status"):
        store.update_job("job-1", status="finished")
    with pytest.raises(InvalidParameter, match="not a job status"):
        store.update_job("job-1", progress=5, expect=("runing",))
    with pytest.raises(InvalidParameter, match="percentage"):
        store.update_job("job-1", progress=101)
    # Only the fixed columns: a caller's name never reaches the SQL.
    with pytest.raises(TypeError, match="cannot set"):
        store.update_job("job-1", **{"status = 'failed' --": 1})
    with pytest.raises(TypeError, match="cannot set"):
        store.update_job("job-1", created=_at(9))
    assert store.job("job-1") == _job("job-1", 0)


def test_the_cached_job_is_the_newest_successful_one_that_still_has_its_result(empty_store):
    store = empty_store
    done = {"status": "successful", "progress": 100}
    for job_id, minute, fields, result in [
        ("old", 0, done, b"old"),
        ("newer", 1, done, b"newer"),
        ("result-dropped", 2, done, b"gone"),
        ("still-running", 3, {"status": "running"}, None),
        ("failed", 4, {"status": "failed"}, None),
        ("other-inputs", 5, {**done, "cache_key": "atlas:v2"}, b"v2"),
        ("other-process", 6, {**done, "process": "coverage"}, b"cov"),
    ]:
        store.create_job(_job(job_id, minute, **fields))
        if result is not None:
            store.update_job(job_id, result=result, result_media="application/pdf")
    store.delete_job_result("result-dropped")

    assert store.cached_job("atlas", "atlas:v1").id == "newer"
    assert store.job_result("newer") == (b"newer", "application/pdf")
    store.delete_job_result("newer")
    assert store.cached_job("atlas", "atlas:v1").id == "old"
    assert store.cached_job("atlas", "atlas:v2").id == "other-inputs"
    assert store.cached_job("coverage", "atlas:v1").id == "other-process"
    assert store.cached_job("atlas", "atlas:v3") is None


def test_jobs_are_listed_newest_first_and_unfinished_ones_oldest_first(empty_store):
    store = empty_store
    statuses = ["successful", "running", "accepted", "failed", "dismissed", "accepted"]
    for minute, status in enumerate(statuses):
        store.create_job(_job(f"job-{minute}", minute, status=status))
    assert store.count_jobs() == 6
    assert [j.id for j in store.jobs()] == [f"job-{m}" for m in range(5, -1, -1)]
    assert [j.id for j in store.jobs(limit=2, offset=1)] == ["job-4", "job-3"]
    assert store.jobs(offset=6) == []
    assert [j.id for j in store.unfinished_jobs()] == ["job-1", "job-2", "job-5"]


def _drop_jobs_table(store) -> None:
    """Make the store look like one created before jobs existed."""
    if store.location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(TEST_PG, autocommit=True) as conn:
            conn.execute(f'DROP TABLE "{store.schema}".gs_jobs')
        return
    with sqlite3.connect(store.location) as conn:
        conn.execute("DROP TABLE gs_jobs")
    conn.close()


def test_a_store_from_before_jobs_gains_the_jobs_table_at_open(empty_store, catalog):
    empty_store.create_job(_job("job-before", 0))
    location = empty_store.location
    empty_store.close()
    _drop_jobs_table(empty_store)

    again = open_store(location, catalog)
    assert again.count_jobs() == 0
    again.create_job(_job("job-1", 1, status="successful"))
    again.update_job("job-1", result=b"x", result_media="text/plain")
    assert again.cached_job("atlas", "atlas:v1").id == "job-1"
    again.close()
