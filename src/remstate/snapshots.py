"""Snapshots: immutable copies of a task's head, taken before every critical operation.

(Filled in by issue 8: take, list, restore, bound per task, delete with the task.)
"""

from __future__ import annotations
