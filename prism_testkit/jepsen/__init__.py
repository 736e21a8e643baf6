"""Jepsen-style pieces: histories of operations (client), faults (nemesis) and their judges (checkers)."""
