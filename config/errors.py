"""The one domain error type. Services raise it; every surface maps it the same way.

API: 400 (or the given status, e.g. 409 for a conflict) with {"errors": {field: [reason]}}.
Forms: added to the form as field errors.
"""

from __future__ import annotations


class DomainError(Exception):
    def __init__(self, message: str, *, field: str = "non_field_errors", status: int = 400, code: str = "invalid"):
        super().__init__(message)
        self.message = str(message)
        self.field = field
        self.status = status
        self.code = code

    @classmethod
    def from_django(cls, exc, *, status: int = 400) -> DomainError:
        """Wrap a django ValidationError, keeping the first field it names."""
        if hasattr(exc, "message_dict"):
            field, messages = next(iter(exc.message_dict.items()))
            err = cls(messages[0], field="non_field_errors" if field == "__all__" else field, status=status)
            err.all_errors = exc.message_dict
            return err
        return cls(" ".join(exc.messages), status=status)

    def as_dict(self) -> dict[str, list[str]]:
        if getattr(self, "all_errors", None):
            return {("non_field_errors" if k == "__all__" else k): [str(m) for m in v] for k, v in self.all_errors.items()}
        return {self.field: [self.message]}
