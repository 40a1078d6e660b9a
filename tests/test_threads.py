"""vaectl/threads.py: how many CPU threads torch and onnxruntime get (--threads, VAECTL_THREADS, the free cores)."""

from __future__ import annotations

import os

import pytest

from vaectl import threads
from vaectl.errors import UserInputError


def test_free_cores_are_the_usable_cores_less_the_load():
    assert threads.free_cores(cores=2, load=0.3) == 2  # an idle machine: every core
    assert threads.free_cores(cores=2, load=0.6) == 1  # about one core taken by someone else
    assert threads.free_cores(cores=8, load=2.4) == 6
    assert threads.free_cores(cores=2, load=15.0) == 1  # never fewer than one
    assert threads.free_cores(cores=4, load=0.0) == 4


def test_free_cores_read_this_machine(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert threads.free_cores() == threads.usable_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "getloadavg", lambda: (1e6, 0.0, 0.0))
    assert threads.free_cores() == 1

    def no_load_average():
        raise OSError("no load average here")

    monkeypatch.setattr(os, "getloadavg", no_load_average)  # where the OS does not say: every core
    assert threads.free_cores() == threads.usable_cores()


def test_choose_threads_given_then_environment_then_free_cores(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (1e6, 0.0, 0.0))
    monkeypatch.delenv(threads.ENV, raising=False)
    assert threads.choose_threads() == 1
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.choose_threads() == 3 and threads.choose_threads(2) == 2
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv(threads.ENV, bad)
        with pytest.raises(UserInputError, match=f"VAECTL_THREADS='{bad}'"):
            threads.choose_threads()
    for bad in (0, -2, 1.5, True):
        with pytest.raises(UserInputError, match="threads must be a whole number of at least 1"):
            threads.choose_threads(bad)
