"""Placeholder replaced by the engineer who owns it (issue 7, wave 2)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Nothing registered yet."""
