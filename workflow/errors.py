"""What a service refuses, and why. The HTTP edge turns each into a problem response."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class DomainError(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    """The thing does not exist, or the caller may not know that it does."""


class Forbidden(DomainError):
    """The caller is known and may see the thing, but its role may not act."""


class Unauthenticated(DomainError):
    pass


@dataclass
class FieldError:
    field: str  # dotted location, e.g. "body.role"
    message: str
    code: str = "invalid"


class InvalidInput(DomainError):
    def __init__(self, detail: str, errors: list[FieldError]) -> None:
        super().__init__(detail)
        self.errors = errors

    @classmethod
    def field(cls, name: str, message: str, code: str = "invalid") -> InvalidInput:
        return cls(message, [FieldError(field=name, message=message, code=code)])


class Conflict(DomainError):
    def __init__(
        self,
        detail: str,
        *,
        state: str | None = None,
        allowed_actions: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.state = state
        self.allowed_actions = allowed_actions
        self.extra = extra or {}


class PreconditionFailed(DomainError):
    pass


class PreconditionRequired(DomainError):
    """A change that must name the version it was made against, and named none."""

    def __init__(self, detail: str, header: str) -> None:
        super().__init__(detail)
        self.header = header


@dataclass
class Throttled(DomainError):
    detail: str
    retry_after: int
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.detail)
