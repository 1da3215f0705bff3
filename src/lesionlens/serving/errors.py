"""Errors the API answers with: a status, a stable code and a message that names the problem."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def to_dict(self) -> dict:
        return {"error": {"status": self.status, "code": self.code, "message": self.message}}
