"""Argon2 password hashing (pwdlib). Unknown accounts cost the same as wrong passwords."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

MIN_PASSWORD_LENGTH = 12
MIN_DISTINCT_CHARACTERS = 5  # "aaaaaaaaaaaa" is twelve characters


class PasswordHasher:
    def __init__(self, *, time_cost: int = 3, memory_cost: int = 65536, parallelism: int = 4) -> None:
        self._hash = PasswordHash(
            (Argon2Hasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism),)
        )

    def hash(self, password: str) -> str:
        return self._hash.hash(password)

    def verify(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        """Whether it matches, and a new hash when the stored one uses old parameters."""
        try:
            return self._hash.verify_and_update(password, password_hash)
        except Exception:  # an unreadable stored hash is a failed login, never a 500
            return False, None

    @cached_property
    def _dummy_hash(self) -> str:
        return self._hash.hash("not-a-password-of-anyone")

    def burn(self, password: str) -> None:
        """Spend the time a real verification would, for a login with no account."""
        self._hash.verify(password, self._dummy_hash)


# Niceness of the threads that check passwords (and of the threads Argon2 starts from them): under
# contention the kernel gives them about a tenth of the CPU a request's thread gets.
CHECK_NICENESS = 10


def _lower_priority() -> None:
    try:
        # Linux: niceness is per thread; this thread's only.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CHECK_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not allowed: checks run at normal priority
        pass


def check_executor(limit: int) -> ThreadPoolExecutor:
    """Where sign-ins check secrets: at most ``limit`` at once, at low CPU priority. A check costs
    ~100 ms of CPU on Argon2's own threads (``parallelism``); a burst of sign-ins on the request
    threads would share the CPU equally with every request, and starve them."""
    return ThreadPoolExecutor(max_workers=limit, thread_name_prefix="password-check", initializer=_lower_priority)
