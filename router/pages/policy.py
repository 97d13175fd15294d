"""Escalation policies: ordered steps, each paging users and schedules, then waiting. Pure.

A policy pages its first step at once; after a step's ``delay`` with the page still
open, the next step; after the last step's delay, the first step again, ``repeat``
more times. :mod:`router.pages.escalation` walks a page through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from router.routing.rules import parse_duration

ScheduleLookup = tuple[str, datetime]


class PolicyStep(BaseModel):
    """One step: whom it pages, and how long it waits for an acknowledgement."""

    model_config = ConfigDict(frozen=True)

    delay_seconds: Annotated[int, Field(ge=0)]
    user_ids: tuple[str, ...] = ()
    schedule_ids: tuple[str, ...] = ()

    def lookups(self, at: datetime) -> list[ScheduleLookup]:
        """The schedules of this step, each to be asked who is on call ``at``."""
        return [(s, at) for s in self.schedule_ids]

    def audience(self, on_call: Mapping[ScheduleLookup, Iterable[str]], at: datetime) -> list[str]:
        """Its users, then whoever is on call ``at`` for its schedules; each once, in order."""
        users = list(self.user_ids)
        for schedule_id in self.schedule_ids:
            users += list(on_call.get((schedule_id, at), ()))
        return list(dict.fromkeys(users))


class Policy(BaseModel):
    """An escalation policy as ``router policies show --json`` prints it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    repeat: Annotated[int, Field(ge=0)] = 0
    steps: tuple[PolicyStep, ...] = ()

    @property
    def rounds(self) -> int:
        """How many times the steps run in all."""
        return self.repeat + 1

    def step(self, number: int) -> PolicyStep:
        """Step ``number`` (1-based)."""
        return self.steps[number - 1]


def describe_duration(seconds: int) -> str:
    """``90`` -> ``90s``, ``300`` -> ``5m``, ``7200`` -> ``2h``: as the commands accept it."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_delay(text: str) -> int:
    """``30s``, ``5m``, ``1h`` (or ``0s``) -> seconds; ValueError with the fix."""
    if text.strip() in ("0", "0s", "0m", "0h"):
        return 0
    return parse_duration(text, units="smhd")


def describe_policy(policy: Policy) -> list[str]:
    """Lines for a person: the policy, then one per step."""
    lines = [f"{policy.id}  {policy.name}  repeat {policy.repeat}  steps {len(policy.steps)}"]
    for number, step in enumerate(policy.steps, start=1):
        who = [*(f"user {u}" for u in step.user_ids), *(f"schedule {s}" for s in step.schedule_ids)]
        lines.append(
            f"  step {number}: {', '.join(who)}; then wait {describe_duration(step.delay_seconds)}"
        )
    return lines
