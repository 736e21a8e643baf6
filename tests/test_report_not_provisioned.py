"""A backend named with ``--prism-backend`` that cannot be provisioned stops the run (a usage
error, exit 4) and still writes the report: a CI matrix job's artifact says which backend could
not be provisioned and why, and the merge of it is red (#51)."""

from __future__ import annotations

import json

import pytest

from prism_testkit.cli import main

KV_SUITE = """
    from prism_testkit import PrismEnv, Slot, prism_suite

    pytestmark = prism_suite("kv", backend=Slot.needs("keyvalue"))

    async def test_put_get(prism_env: PrismEnv) -> None:
        kv = prism_env.driver("backend").keyvalue()
        await kv.put(prism_env.ns.name("k"), b"v")
        assert await kv.get(prism_env.ns.name("k")) == b"v"
"""
WHY = "PRISM_REDIS_BINARY: /no/such/redis-server does not exist"


def test_an_unprovisionable_named_backend_still_writes_a_red_report(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRISM_REDIS_BINARY", "/no/such/redis-server")
    pytester.makepyfile(KV_SUITE)
    written = []
    for shard in (1, 2, 3):  # a job per backend, each in three shards: every shard stops alike
        monkeypatch.setenv("PRISM_SHARD", f"{shard}/3")
        result = pytester.runpytest("--prism-backend=memstore,redis", f"--prism-report=reports/redis-{shard}.json")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(
            [
                f"prism-testkit report written to reports/redis-{shard}.json",
                "*'redis' was asked for by name but cannot be provisioned: PRISM_REDIS_BINARY*",
            ]
        )
        written.append(pytester.path / "reports" / f"redis-{shard}.json")
    report = json.loads(written[1].read_text())
    [entry] = report["not_provisioned"]
    assert entry["backend"] == "redis"
    assert entry["reason"].startswith(WHY)
    assert {"backend": "redis", "reason": entry["reason"]} in report["unavailable"]
    assert [b["backend"] for b in report["backends"]] == ["memstore"]
    assert report["suites"] == []
    assert report["failures"] == []
    assert report["totals"] == {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    assert report["shard"]["index"] == 2
    assert report["shard"]["count"] == 3
    assert report["run"]["id"]
    assert report["run"]["stopped"].startswith("backend 'redis' was asked for by name")

    # The merge of the job's shards is red and says why, in the Markdown and the merged JSON.
    capsys.readouterr()
    merged_json = pytester.path / "merged.json"
    code = main(["report", "merge", *map(str, written), "--markdown", "-", "--json", str(merged_json)])
    markdown = capsys.readouterr().out
    assert code == 1
    assert "### Backends named but not provisioned (their jobs stopped before any test)" in markdown
    assert f"- **redis**: {WHY}" in markdown
    merged = json.loads(merged_json.read_text())
    assert merged["not_provisioned"] == report["not_provisioned"]
    assert merged["totals"]["backends_not_provisioned"] == 1
