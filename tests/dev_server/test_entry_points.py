"""The command-line entry points: ``python -m fusionauth_dev``, ``run()``'s banner, and ``kickstart apply``."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from fusionauth_dev import ManualClock, create_dev_server, kickstart, serve
from fusionauth_dev import __main__ as entry
from support.live_server import serve as serve_in_thread

from .conftest import ADMIN_KEY, EMAIL_OVERLAY, ENV, KICKSTART


def test_run_binds_loopback_and_says_it_is_not_fusionauth(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, clock: ManualClock
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(serve.uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    server = create_dev_server([KICKSTART], env=ENV, clock=clock)
    with caplog.at_level(logging.INFO, logger="fusionauth_dev"):
        serve.run(server)
    assert calls == [{"host": "127.0.0.1", "port": 9011, "log_level": "info"}]
    text = caplog.text
    assert "NOT FusionAuth" in text and "development" in text.lower()
    assert "alice@example.com / stepup-demo" in text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fusionauth_dev"):
        serve.run(server, host="0.0.0.0")  # noqa: S104 - checking the warning for exactly this
    assert "beyond this machine" in caplog.text


def test_main_generates_missing_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []
    monkeypatch.setattr(entry, "run", lambda server, **kwargs: started.append((server, kwargs)))
    for name in kickstart.KICKSTART_SECRETS:
        monkeypatch.delenv(name, raising=False)
    assert entry.main([str(KICKSTART), "--port", "9999"]) == 0
    [(server, kwargs)] = started
    assert kwargs == {"host": "127.0.0.1", "port": 9999}
    assert len(server.seed().bff_api_key.key) >= 32


def test_main_with_require_env_reports_the_missing_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in kickstart.KICKSTART_SECRETS:
        monkeypatch.delenv(name, raising=False)
    assert entry.main([str(KICKSTART), "--require-env"]) == 2
    assert "FUSIONAUTH_ADMIN_API_KEY" in capsys.readouterr().err


def test_kickstart_apply_sends_the_overlay_to_a_running_server(capsys: pytest.CaptureFixture[str]) -> None:
    # The dev server stands in for a licensed FusionAuth that was kickstarted without the overlay.
    target = create_dev_server([KICKSTART], env=ENV)
    assert target.seed().user("bob@example.com").methods == ()
    with serve_in_thread(target.app) as live:
        status = kickstart.main(["apply", "--url", live.url, "--api-key", ADMIN_KEY, str(EMAIL_OVERLAY)])
    assert status == 0
    out = capsys.readouterr().out
    assert "200 PATCH /api/user/b0b00000-0000-4000-8000-000000000002" in out
    assert [m.method for m in target.seed().user("bob@example.com").methods] == ["email"]
    assert [m.method for m in target.seed().user("carol@example.com").methods] == ["authenticator", "email"]


def test_kickstart_apply_stops_at_the_first_failure(capsys: pytest.CaptureFixture[str]) -> None:
    target = create_dev_server([KICKSTART], env=ENV)
    with serve_in_thread(target.app) as live:
        status = kickstart.main(["apply", "--url", live.url, "--api-key", "wrong-key", str(EMAIL_OVERLAY)])
    assert status == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("401 POST /api/email/template/")
    assert "failed" in captured.err
