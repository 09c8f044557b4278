"""docs/grafana-dashboard.json is valid JSON whose every query names real metrics and their real labels, and every
metric the app records has a panel."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from stepup_bff.errors import InvalidCode
from stepup_bff.ops.metrics import Metrics, metric_names

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json"
METRIC = re.compile(r"\bstepup_bff_[a-z_]+\b")
GROUPING = re.compile(r"\bby \(([^)]*)\)")
SELECTOR = re.compile(r"\{([^}]*)\}")


def _queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["title"] and dashboard["panels"]
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def _labels_by_series() -> dict[str, set[str]]:
    """Record one of everything, then read which label names each series carries."""
    metrics = Metrics()
    metrics.request_started()
    metrics.request_finished("/healthz", "GET", 200, 0.001)
    metrics.observe_fusionauth("discovery", "ok", 0.01)
    with metrics.step_up_outcome("start", "started"):
        pass
    try:
        with metrics.step_up_outcome("finish", "verified"):
            raise InvalidCode(attempts_remaining=1)
    except InvalidCode:
        pass
    with metrics.sign_in_outcome("hosted"):
        pass
    metrics.signed_out("hosted")
    metrics.session_ended("sign_out")
    metrics.store_error("sqlite", "get")
    metrics.transaction_refused("send_telegram", "mismatch")
    metrics.activity_recorded("sign_in")
    metrics.activity_write_failed("sign_in")
    metrics.webhook("user.deactivate", "applied")
    found: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


def test_every_query_names_real_metrics_and_labels() -> None:
    known = metric_names(Metrics())
    labels = _labels_by_series()
    for query in _queries():
        names = METRIC.findall(query)
        assert names, f"no stepup_bff metric in {query!r}"
        for name in names:
            assert name in known, f"{name} (in {query!r}) is not a metric of ops/metrics.py"
        allowed = set().union(*(labels[name] for name in names))
        used = {label.strip() for group in GROUPING.findall(query) for label in group.split(",")}
        used |= {
            matcher.split("=")[0].rstrip("!~").strip()
            for group in SELECTOR.findall(query)
            for matcher in group.split(",")
        }
        assert used <= allowed, f"{query!r} uses labels {used - allowed} that its metrics do not have"


def test_every_metric_has_a_panel() -> None:
    queried = {name for query in _queries() for name in METRIC.findall(query)}
    families = {family.name for family in Metrics().registry.collect()}
    for family in families:
        assert any(name.startswith(family) for name in queried), f"no panel shows {family}"


def test_every_panel_uses_the_dashboard_datasource() -> None:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert [variable["type"] for variable in dashboard["templating"]["list"]] == ["datasource"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
