"""The settings object and the spec hashes fitted tables record."""

from __future__ import annotations

import pytest

from lob_platform.core.settings import TrainingWindowSpec, load_settings, require_spec, spec_hash
from lob_platform.errors import ConfigError
from lob_platform.tokens.bins import BinEdges


def test_paths_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LOB_DATA_DIR", str(tmp_path / "in"))
    monkeypatch.setenv("LOB_WAREHOUSE_DIR", str(tmp_path / "out"))
    settings = load_settings()
    assert (settings.data_root, settings.warehouse_root) == (tmp_path / "in", tmp_path / "out")
    assert settings.training == TrainingWindowSpec() and settings.training.train_days == 5


def test_spec_hash_is_stable_and_changes_with_any_field():
    assert spec_hash(BinEdges(), TrainingWindowSpec()) == spec_hash(BinEdges(), TrainingWindowSpec())
    assert spec_hash(BinEdges(), TrainingWindowSpec()) != spec_hash(BinEdges(), TrainingWindowSpec(train_days=4))
    assert spec_hash(BinEdges()) != spec_hash(BinEdges(n_coarse=3))


def test_a_table_made_under_other_settings_is_refused_naming_both():
    require_spec("lobster/bin_edges", "abc", "abc")
    with pytest.raises(ConfigError, match="lobster/bin_edges was made with spec abc, but this run's settings hash to def"):
        require_spec("lobster/bin_edges", "abc", "def")


def test_a_window_spec_that_cannot_work_is_refused():
    with pytest.raises(ConfigError, match="TrainingWindowSpec"):
        TrainingWindowSpec(train_fraction=1.0)
