"""deploy/prometheus: the rules and the example configuration pass promtool, the rules' unit
tests pass, and every metric the rules use is one the server really exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from fixtures.metrics import scrape
from fixtures.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    """Debian's promtool; scripts/promtool.sh installs it when missing (as `make test` does)."""
    found = subprocess.run(
        [str(ROOT / "scripts" / "promtool.sh")], capture_output=True, text=True, timeout=600
    )
    assert found.returncode == 0, f"promtool could not be installed: {found.stderr}"
    return found.stdout.strip().splitlines()[-1]


def _promtool(promtool: str, *args: str) -> str:
    r = subprocess.run([promtool, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def test_rules_and_config_pass_promtool_check(promtool: str) -> None:
    assert "SUCCESS: 8 rules found" in _promtool(promtool, "check", "rules", "alerts.yml")
    assert "valid prometheus config" in _promtool(promtool, "check", "config", "prometheus.yml")


def test_alert_rules_unit_tests_pass(promtool: str) -> None:
    assert "SUCCESS" in _promtool(promtool, "test", "rules", "alerts_test.yml")


def test_rules_use_only_metrics_the_server_exports(server: ServerProcess) -> None:
    used = set(re.findall(r"\bpacs_[a-z_]+", (DEPLOY / "alerts.yml").read_text()))
    assert used >= {"pacs_http_requests_total", "pacs_storage_operations_total"}
    exported = scrape(server.url)
    # A histogram's buckets are exported under its _bucket series name.
    names = {name for name, _ in exported.samples}
    assert used <= names, used - names
