"""TTL cleanup: soft delete after the retention, purge after the grace period, orphans.

(Filled in by issue 8.)
"""

from __future__ import annotations
