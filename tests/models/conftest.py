"""Shared fixtures: no test may download anything or write into the project's own cache, and torch runs
on one thread (on a busy 2-core machine, two OpenMP threads made these tests up to 20x slower)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _offline_private_cache_one_thread(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("QUASAR_NO_DOWNLOAD", "1")
    monkeypatch.setenv("QUASAR_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
