"""Extension points other apps plug into from their AppConfig.ready().

patients/ sits below consent, messaging and scheduling, so it cannot import them; instead they
register here what they contribute to the Patient 360 timeline and to a patient's data export.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TimelineEntry:
    at: dt.datetime
    kind: str  # "profile", "consent", "access", "message", "appointment", …
    title: str
    detail: str = ""
    actor: str = ""
    extra: dict = field(default_factory=dict, compare=False)


# source(patient_ids, limit) -> the `limit` most recent entries, newest first.
TimelineSource = Callable[[list[int], int], Iterable[TimelineEntry]]
# section(patient, patient_ids) -> JSON-serialisable data for the export; patient_ids are the
# patient and the records merged into it (as for timeline sources), computed once per export.
ExportSection = Callable[[object, list[int]], object]

_timeline_sources: dict[str, TimelineSource] = {}
_export_sections: dict[str, ExportSection] = {}


def register_timeline_source(kind: str, source: TimelineSource) -> None:
    _timeline_sources[kind] = source


def register_export_section(name: str, section: ExportSection) -> None:
    _export_sections[name] = section


def timeline_sources() -> dict[str, TimelineSource]:
    return dict(_timeline_sources)


def export_sections() -> dict[str, ExportSection]:
    return dict(_export_sections)
