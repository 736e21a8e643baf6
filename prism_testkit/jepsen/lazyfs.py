"""Moved to :mod:`prism_testkit.faults.lazyfs`; kept for one release."""

from prism_testkit._moved import moved

moved(__name__, "prism_testkit.faults.lazyfs")
