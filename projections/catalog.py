"""Every projection turnlog keeps, by name."""

from __future__ import annotations

from turnlog.projections.base import Projection
from turnlog.projections.collections import Collections
from turnlog.projections.sessions import Blocks, Data, History, Sessions
from turnlog.projections.tasks import Tasks
from turnlog.projections.timeline import Timeline

PROJECTIONS: dict[str, Projection] = {
    p.name: p for p in (Sessions(), History(), Data(), Blocks(), Collections(), Timeline(), Tasks())
}
