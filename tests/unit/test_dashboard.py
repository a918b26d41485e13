"""The campaign dashboard builder: golden file, uids, and names that never reach JSON unchecked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerview.exceptions import NameRuleError
from powerview.layout import NAME_RULE
from powerview.provision.dashboard import (
    UID_MAX,
    build_dashboard,
    dashboard_uid,
    flat_uid,
    legacy_dashboard_uid,
)

GOLDEN = Path(__file__).parent / "testdata" / "dashboards" / "acme-campaign1.json"


def test_the_dashboard_matches_its_reviewed_golden_file() -> None:
    built = build_dashboard("acme", "campaign1", "pv-ds-acme", "influxdb-adecwatts-datasource")
    assert built == json.loads(GOLDEN.read_text())


def test_the_same_inputs_give_the_same_json() -> None:
    first = build_dashboard("acme", "c1", "u", "t")
    assert json.dumps(first, sort_keys=True) == json.dumps(
        build_dashboard("acme", "c1", "u", "t"), sort_keys=True
    )


def test_panels_cover_voltage_current_and_power_on_the_company_bucket() -> None:
    built = build_dashboard("globex", "north", "uid", "influxdb-adecwatts-datasource")
    queries = [panel["targets"][0]["query"] for panel in built["panels"]]
    assert [panel["title"] for panel in built["panels"]] == [
        "Voltages (V)",
        "Currents (A)",
        "Power (W)",
    ]
    for unit, query in zip("VAW", queries, strict=True):
        assert 'from(bucket: "globex" + level)' in query
        assert f'r.channel_unit == "{unit}"' in query
        assert 'r.campaign == "${campaign}"' in query
    names = [variable["name"] for variable in built["templating"]["list"]]
    assert names == ["campaign", "device", "channel"]


def test_uids_are_deterministic_and_at_most_40_characters() -> None:
    assert dashboard_uid("acme", "campaign1") == "pv-dash-4-acme-campaign1"
    long_company, long_campaign = "c" * 63, "d" * 63
    uid = dashboard_uid(long_company, long_campaign)
    assert len(uid) <= UID_MAX
    assert uid == dashboard_uid(long_company, long_campaign)
    # Two long names sharing a prefix still get different uids.
    assert dashboard_uid(long_company, "d" * 62 + "e") != uid
    assert len(flat_uid("folder", long_company)) <= UID_MAX


def test_the_pairs_that_shared_a_uid_now_differ() -> None:
    assert legacy_dashboard_uid("a", "b-c") == legacy_dashboard_uid("a-b", "c")
    assert dashboard_uid("a", "b-c") != dashboard_uid("a-b", "c")
    # Folder and datasource uids keep their first rule: existing folders stay put.
    assert flat_uid("folder", "acme") == "pv-folder-acme"
    assert flat_uid("ds", "acme") == "pv-ds-acme"


_NAMES = st.from_regex(NAME_RULE, fullmatch=True)


@settings(max_examples=500)
@given(first=st.tuples(_NAMES, _NAMES), second=st.tuples(_NAMES, _NAMES))
def test_dashboard_uids_are_injective(first: tuple[str, str], second: tuple[str, str]) -> None:
    uid = dashboard_uid(*first)
    assert len(uid) <= UID_MAX
    assert (uid == dashboard_uid(*second)) == (first == second)


@settings(max_examples=300)
@given(company=_NAMES, campaign=_NAMES, other=_NAMES)
def test_a_dashboard_uid_is_never_a_folder_datasource_or_admin_uid(
    company: str, campaign: str, other: str
) -> None:
    uid = dashboard_uid(company, campaign)
    assert uid not in {flat_uid("folder", other), flat_uid("ds", other)}
    assert not uid.startswith("pv-admin")


def test_a_long_uid_never_equals_a_short_one() -> None:
    # The attack on a truncate-and-hash rule: a campaign spelling out another's long uid.
    long_uid = dashboard_uid("acme", "d" * 60)
    assert long_uid.startswith("pv-dash-4-acme-")
    forged = long_uid.removeprefix("pv-dash-4-acme-")
    assert dashboard_uid("acme", forged) != long_uid


@pytest.mark.parametrize(
    "name", ["a b", 'ac"me', "$(id)", "..", "acme/../x", "\uff41cme", "x" * 200, "", "-lead"]
)
def test_hostile_names_are_refused_before_any_json_is_built(name: str) -> None:
    with pytest.raises(NameRuleError):
        build_dashboard(name, "c1", "u", "t")
    with pytest.raises(NameRuleError):
        build_dashboard("acme", name, "u", "t")
