"""The stand-in's in-memory data: admins, API keys, tokens, users, event actions and rules."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any


def now_ms() -> int:
    return int(time.time() * 1000)


def hash_password(password: str, salt: str | None = None) -> str:
    """A salted hash: SFTPGo keeps only a hash (bcrypt by default), never the password."""
    salt = salt or secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 10_000).hex()
    return f"$pbkdf2-sha256$10000${salt}${digest}"


def password_matches(stored: str, password: str) -> bool:
    salt = stored.split("$")[3]
    return secrets.compare_digest(stored, hash_password(password, salt))


@dataclass
class State:
    """Everything the server holds; handlers run under ``lock``."""

    admin_user: str
    admin_password: str
    api_keys: set[str] = field(default_factory=set)
    tokens: dict[str, float] = field(default_factory=dict)  # JWT -> expiry (epoch s)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # as SFTPGo stores them
    actions: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: dict[str, int] = field(default_factory=dict)

    def next_id(self, kind: str) -> int:
        self._ids[kind] = self._ids.get(kind, 0) + 1
        return self._ids[kind]

    def check_password(self, username: str, password: str) -> bool:
        """Would SFTPGo let ``username`` log in with ``password``?"""
        user = self.users.get(username)
        stored = (user or {}).get("password", "")
        return bool(stored) and password_matches(stored, password)

    def rules_using(self, action: str) -> list[str]:
        return sorted(
            name
            for name, rule in self.rules.items()
            if any(item["name"] == action for item in rule.get("actions", []))
        )
