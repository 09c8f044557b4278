"""The command-line entry points: ``python -m fusionauth_dev [apply]``, and ``run()``'s banner."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fusionauth_dev import ManualClock, create_dev_server, kickstart, serve
from fusionauth_dev import __main__ as entry
from support.live_server import serve as serve_in_thread

from .conftest import ADMIN_KEY, EMAIL_OVERLAY, ENV, KICKSTART, ROOT


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


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    # -W error: any warning, such as runpy's RuntimeWarning for a module the package already imported, fails the run.
    command = [sys.executable, "-W", "error", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603


@pytest.mark.live
def test_the_documented_apply_command_sends_the_overlay_without_a_warning() -> None:
    # The dev server stands in for a licensed FusionAuth that was kickstarted without the overlay (README.md).
    target = create_dev_server([KICKSTART], env=ENV)
    assert target.seed().user("bob@example.com").methods == ()
    with serve_in_thread(target.app) as live:
        done = _python("-m", "fusionauth_dev", "apply", "--url", live.url, "--api-key", ADMIN_KEY, str(EMAIL_OVERLAY))
    assert (done.returncode, done.stderr) == (0, "")
    assert "200 PATCH /api/user/b0b00000-0000-4000-8000-000000000002" in done.stdout
    assert [m.method for m in target.seed().user("bob@example.com").methods] == ["email"]
    assert [m.method for m in target.seed().user("carol@example.com").methods] == ["authenticator", "email"]


def test_the_old_kickstart_module_command_says_where_the_command_went() -> None:
    done = subprocess.run(  # noqa: S603 - no -W error here: this is the invocation runpy warns about
        [sys.executable, "-m", "fusionauth_dev.kickstart", "apply", "--url", "http://127.0.0.1:9", str(EMAIL_OVERLAY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "use: python -m fusionauth_dev apply" in done.stderr


@pytest.mark.live
def test_apply_stops_at_the_first_failure(capsys: pytest.CaptureFixture[str]) -> None:
    target = create_dev_server([KICKSTART], env=ENV)
    with serve_in_thread(target.app) as live:
        status = entry.main(["apply", "--url", live.url, "--api-key", "wrong-key", str(EMAIL_OVERLAY)])
    assert status == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("401 POST /api/email/template/")
    assert "failed" in captured.err


def test_apply_needs_an_api_key(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("FUSIONAUTH_ADMIN_API_KEY", raising=False)
    with pytest.raises(SystemExit) as exited:
        entry.main(["apply", "--url", "http://127.0.0.1:9", str(EMAIL_OVERLAY)])
    assert exited.value.code == 2
    assert "python -m fusionauth_dev apply: error: an API key is required" in capsys.readouterr().err


def test_apply_reports_an_unreachable_fusionauth_without_a_traceback(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.json"
    overlay.write_text('{"requests": [{"method": "POST", "url": "/api/user-action/x", "body": {}}]}')
    result = subprocess.run(  # noqa: S603 - our own module
        [
            sys.executable,
            "-m",
            "fusionauth_dev",
            "apply",
            "--url",
            "http://127.0.0.1:9",
            "--api-key",
            "k",
            str(overlay),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "cannot reach FusionAuth at http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr
