"""Waiting on a condition with a deadline, shared by every pytest suite (never sleep and hope)."""
import time

import pytest


def wait_until(condition, timeout=10.0, what="condition", *, interval=0.01, diagnose=None):
    """condition()'s first truthy value, polled every *interval* seconds; fails the test, naming
    *what* (and what *diagnose*() adds), once *timeout* seconds have passed without one."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}{diagnose() if diagnose else ''}")
        time.sleep(interval)
