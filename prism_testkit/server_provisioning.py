"""Moved to :mod:`prism_testkit.provision.servers`; kept for one release."""

from prism_testkit._moved import moved

moved(__name__, "prism_testkit.provision.servers")
