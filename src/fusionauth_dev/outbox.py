"""Where "sent" two-factor codes go: the console log and an in-memory list (``GET /_dev/messages``).

Printing the code is the point: a person trying the demo reads it here instead of in a mailbox.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fusionauth_dev.clock import Clock

logger = logging.getLogger(__name__)

# Enough for a long demo session; older messages are dropped first.
MAX_MESSAGES = 200


@dataclass(frozen=True)
class Message:
    method: str
    to: str
    code: str
    sent_at: float
    # The tenant's message template rendered (templates.py), where the method has one.
    subject: str | None = None
    text: str | None = None
    html: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "to": self.to,
            "code": self.code,
            "sent_at": datetime.fromtimestamp(self.sent_at, UTC).isoformat(timespec="seconds"),
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
        }


class Outbox:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._messages: list[Message] = []
        # The app runs on the event loop, but tests and the /_dev page may read from other threads.
        self._lock = threading.Lock()

    def deliver(
        self,
        method: str,
        to: str,
        code: str,
        *,
        subject: str | None = None,
        text: str | None = None,
        html: str | None = None,
    ) -> Message:
        message = Message(method, to, code, self._clock.now(), subject, text, html)
        with self._lock:
            self._messages.append(message)
            del self._messages[:-MAX_MESSAGES]
        logger.info("dev outbox: %s to %s: code %s", method, to, code)
        return message

    def messages(self) -> list[Message]:
        """Oldest first, newest last."""
        with self._lock:
            return list(self._messages)

    def last_code_for(self, to: str) -> str | None:
        """The newest code sent to ``to`` (an email address or phone number); handy in tests."""
        for message in reversed(self.messages()):
            if message.to == to:
                return message.code
        return None

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
