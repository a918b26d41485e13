"""The campaign dashboard builder: golden file, uids, and names that never reach JSON unchecked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from powerview.exceptions import NameRuleError
from powerview.provision.dashboard import UID_MAX, build_dashboard, dashboard_uid, uid_for

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
    assert dashboard_uid("acme", "campaign1") == "pv-acme-campaign1"
    long_company, long_campaign = "c" * 63, "d" * 63
    uid = dashboard_uid(long_company, long_campaign)
    assert len(uid) <= UID_MAX
    assert uid == dashboard_uid(long_company, long_campaign)
    # Two long names sharing a prefix still get different uids.
    assert dashboard_uid(long_company, "d" * 62 + "e") != uid
    assert len(uid_for("folder", long_company)) <= UID_MAX


@pytest.mark.parametrize(
    "name", ["a b", 'ac"me', "$(id)", "..", "acme/../x", "\uff41cme", "x" * 200, "", "-lead"]
)
def test_hostile_names_are_refused_before_any_json_is_built(name: str) -> None:
    with pytest.raises(NameRuleError):
        build_dashboard(name, "c1", "u", "t")
    with pytest.raises(NameRuleError):
        build_dashboard("acme", name, "u", "t")
