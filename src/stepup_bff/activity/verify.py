"""`stepup-bff audit verify`: check every user's activity chain in database.url."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TextIO

from ..settings import Settings
from ..storage import ActivityEvent, open_database
from .chain import ChainBreak, verify_chain


@dataclass
class Report:
    chains: int = 0
    events: int = 0
    breaks: list[ChainBreak] = field(default_factory=list)
    heads: list[ActivityEvent] = field(default_factory=list)  # each chain's newest event


async def verify_database(settings: Settings) -> Report:
    report = Report()
    async with open_database(settings.database) as database:
        async for chain in database.activity_chains():
            report.chains += 1
            report.events += len(chain)
            report.breaks += verify_chain(chain)
            if chain:
                report.heads.append(chain[-1])
    return report


def print_report(report: Report, out: TextIO, *, heads: bool) -> int:
    """The report for people; the exit code: 0 intact, 1 broken."""
    for problem in report.breaks:
        out.write(f"✗ {problem}\n")
    if heads:
        # The newest event of each chain: kept elsewhere, they show later whether a chain lost its newest events,
        # which no chain can show by itself.
        for head in report.heads:
            out.write(f"  head user {head.user_id}: event {head.seq} {head.hash}\n")
    verdict = "✗" if report.breaks else "✓"
    summary = f"{report.chains} chain(s), {report.events} event(s)"
    if report.breaks:
        out.write(f"{verdict} {summary}: {len(report.breaks)} break(s)\n")
        return 1
    out.write(f"{verdict} {summary}: intact\n")
    return 0
