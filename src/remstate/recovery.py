"""Recovery: validate a task's stored state as a report, and repair it after a snapshot.

(Filled in by issue 8.)
"""

from __future__ import annotations
