"""Typed shapes of what the package takes as keywords and dicts, for type checkers.

These are plain ``TypedDict`` and ``Protocol`` classes: the values are ordinary dicts and
objects, checked at run time by the engine or the server (which name any bad field).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Literal, Optional, Protocol, TypedDict, Union

if TYPE_CHECKING:
    from allocate._allocate import Candidate, Requirements

__all__ = [
    "AllocationState",
    "EngineConfigDict",
    "GpuRequirementDict",
    "LimitsDict",
    "MatchPolicy",
    "RequirementsDict",
    "ResourceState",
    "ScorePolicy",
    "VetoPolicy",
]


class GpuRequirementDict(TypedDict, total=False):
    """The ``gpu`` requirement: a label to contain, memory per GPU, and how many GPUs."""

    label: str
    min_memory_gb: int
    count: int


class RequirementsDict(TypedDict, total=False):
    """The contract's ``requirements``, as keyword arguments (``username`` is required by the
    engine; a client fills in its own)."""

    tags: List[str]
    username: str
    allocation_timeout_seconds: int
    expires: int
    type: str
    min_cpu_count: int
    min_memory_gb: int
    gpu: GpuRequirementDict
    exclude_tags: List[str]
    release_on_disconnect: bool
    count: int
    ssh_keys: List[str]
    provision: Dict[str, Any]


class LimitsDict(TypedDict):
    """Size limits on what clients send."""

    string_chars_max: int
    list_len_max: int
    resources_per_registration_max: int


class EngineConfigDict(TypedDict, total=False):
    """The engine's settings (allocate-core's ``Config``); missing ones take their defaults."""

    lease_secs_default: int
    lease_secs_max: int
    wait_secs_max: int
    provision_timeout_ms: int
    release_timeout_ms: int
    ended_allocations_max: int
    usage_retention_secs: int
    usage_records_max: int
    policy_candidates_max: int
    record_inputs: bool
    limits: LimitsDict
    order: Literal["arrival", "fair-share"]


class VetoPolicy(Protocol):
    """A matching policy that can forbid candidates."""

    def veto(self, request: Requirements, candidate: Candidate) -> bool:
        """True to forbid giving ``candidate`` to ``request``."""
        ...


class ScorePolicy(Protocol):
    """A matching policy that ranks candidates."""

    def score(self, request: Requirements, candidate: Candidate) -> Optional[int]:
        """A score (higher wins) or None for no opinion."""
        ...


#: A matching policy: an object with ``veto`` and/or ``score``; both must be deterministic.
MatchPolicy = Union[VetoPolicy, ScorePolicy]

#: Where a resource stands.
ResourceState = Literal["free", "allocated", "offline", "error", "maintenance", "reserved"]

#: Where a client's allocation stands (``Allocation.state``).
AllocationState = Literal[
    "new", "waiting", "queued", "ready", "offline", "released", "expired", "timed_out", "failed"
]
