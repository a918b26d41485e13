"""Downsampling settings and Flux, without a server: durations, refused values, task
names and the lookback each level's task recomputes."""

from __future__ import annotations

import pytest

from powerview import settings as config
from powerview.exceptions import ConfigError, NameRuleError
from powerview.provision.downsample import LEVELS, bucket_names, task_flux, task_lookback_s


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("3600", 3600), ("12h", 43_200), ("90d", 7_776_000), ("2w", 1_209_600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert config.duration_seconds(text) == seconds


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("POWERVIEW_RETENTION_RAW", "30m"),  # InfluxDB's minimum is 1h
        ("POWERVIEW_RETENTION_1D", "ninety days"),
        ("POWERVIEW_DOWNSAMPLE_LOOKBACK", "0"),
        ("POWERVIEW_RETENTION_1W", "-1d"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        config.load()


def test_each_level_recomputes_the_lookback_plus_one_of_its_windows() -> None:
    settings = config.load(downsample_lookback="7d")
    assert [task_lookback_s(settings, level) for level in LEVELS] == [
        7 * 86_400,
        8 * 86_400,
        14 * 86_400,
    ]
    flux = task_flux("acme", LEVELS[2], task_lookback_s(settings, LEVELS[2]))
    assert 'option task = {name: "powerview_downsample_acme_1w", every: 1d, offset: 40m}' in flux
    assert 'from(bucket: "acme_1d")' in flux
    assert 'to(bucket: "acme_1w")' in flux


def test_names_are_checked_before_any_flux_is_built() -> None:
    assert bucket_names("acme") == ("acme", "acme_1h", "acme_1d", "acme_1w")
    with pytest.raises(NameRuleError):
        task_flux('ac"me', LEVELS[0], 3600)
