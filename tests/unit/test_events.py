"""Upload events → decisions: the SFTPGo hook's choice, the tree scan, the still-open check.

Everything here is a pure function of an event and a real temporary tree;
the hook as SFTPGo runs it is in tests/integration/test_hook_contract.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from powerview import events
from powerview.events import Decision, decide_path, decide_sftpgo, parse_user_map

SN = "02001084"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "acme" / "c1" / SN).mkdir(parents=True)
    (data / "globex" / "g1" / SN).mkdir(parents=True)
    return data


def sftpgo(action: str, user: str, path: Path | str, target: Path | str = "", status: str = "1"):
    """The variables SFTPGo sets for one event (the ones the decision reads, and more)."""
    return {
        "SFTPGO_ACTION": action,
        "SFTPGO_ACTION_USERNAME": user,
        "SFTPGO_ACTION_PATH": str(path),
        "SFTPGO_ACTION_TARGET": str(target),
        "SFTPGO_ACTION_STATUS": status,
        "SFTPGO_ACTION_FILE_SIZE": "1234",
        "SFTPGO_ACTION_PROTOCOL": "SFTP",
        "SFTPGO_ACTION_FS_PROVIDER": "0",
    }


def assert_ingest(decision: Decision, path: Path, company: str, campaign: str, sn: str) -> None:
    assert decision.kind == "ingest", decision.reason
    assert decision.subject == str(path)
    # SFTPGo's completed transfers say so (no settle wait); checked on its own below.
    payload = {k: v for k, v in decision.payload.items() if k != "complete"}
    assert payload == {
        "path": str(path),
        "company": company,
        "campaign": campaign,
        "device_sn": sn,
    }
    assert not decision.ignored


def assert_ignored(decision: Decision, *words: str) -> None:
    assert decision.ignored, f"expected nothing to be done, got {decision}"
    assert decision.kind is None
    assert decision.payload == {}
    assert decision.subject == ""
    assert decision.reason
    for word in words:
        assert word in decision.reason, decision.reason


# -- upload ------------------------------------------------------------------------


def test_sftpgo_transfers_are_marked_complete_and_watcher_events_are_not(root: Path) -> None:
    path = root / "acme" / "c1" / SN / "T302_251012_031720.tsv"
    part = path.with_name(path.name + ".filepart")
    assert decide_sftpgo(sftpgo("upload", "acme", path), root).payload["complete"] is True
    renamed = decide_sftpgo(sftpgo("rename", "acme", part, target=path), root)
    assert renamed.payload["complete"] is True
    assert "complete" not in decide_path("file", str(path), root).payload


def test_a_symbolic_link_is_never_ingested(root: Path, tmp_path: Path) -> None:
    victim = root / "globex" / "g1" / SN / "T302_251012_031720.tsv"
    victim.write_text("data of another company")
    planted = root / "acme" / "c1" / SN / "T302_251012_031720.tsv"
    planted.symlink_to(victim)
    assert_ignored(decide_path("file", str(planted), root), "symbolic link")
    inside = root / "acme" / "c1" / SN / "other.tsv"
    real = root / "acme" / "c1" / SN / "real.tsv"
    real.write_text("x")
    inside.symlink_to(real)
    assert_ignored(decide_path("file", str(inside), root), "symbolic link")


@pytest.mark.parametrize("action", ["upload", "first-upload"])
def test_completed_upload_of_a_device_file_is_ingested(root: Path, action: str) -> None:
    path = root / "acme" / "c1" / SN / "T302_251012_031720.tsv"
    assert_ingest(decide_sftpgo(sftpgo(action, "acme", path), root), path, "acme", "c1", SN)


def test_upload_decision_does_not_need_the_file_to_exist_yet(root: Path) -> None:
    path = root / "acme" / "new-campaign" / "02000800" / "x.TSV"
    decision = decide_sftpgo(sftpgo("upload", "acme", path), root)
    assert_ingest(decision, path, "acme", "new-campaign", "02000800")


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ("2", ("'2'", "failed or partial")),
        ("3", ("'3'", "quota exceeded")),
        ("0", ("'0'", "unknown")),
        ("", ("''", "unknown")),
        ("1 ", ("unknown",)),
    ],
)
def test_failed_partial_or_quota_uploads_are_not_ingested(
    root: Path, status: str, words: tuple[str, ...]
) -> None:
    path = root / "acme" / "c1" / SN / "x.tsv"
    for action in ("upload", "first-upload"):
        decision = decide_sftpgo(sftpgo(action, "acme", path, status=status), root)
        assert_ignored(decision, "status", *words)


@pytest.mark.parametrize(
    "name",
    [
        "x.tsv.filepart",  # WinSCP
        ".sftpgo-upload.123.x.tsv",  # SFTPGo atomic mode
        "x.tsv.part",
        "x.tsv.tmp",
        ".x.tsv",
        "x.csv",
        "x.tsv.gz",
        "README",
    ],
)
def test_upload_of_a_temporary_or_foreign_name_is_ignored(root: Path, name: str) -> None:
    path = root / "acme" / "c1" / SN / name
    assert_ignored(decide_sftpgo(sftpgo("upload", "acme", path), root))


@pytest.mark.parametrize(
    "relative",
    [
        "acme/x.tsv",  # company level
        "acme/c1/x.tsv",  # campaign level
        "acme/c1/02001084/deeper/x.tsv",  # below the device folder
        "acme/c1/02001084/parsed/x.tsv",  # already processed
        "acme/c1/02001084/error/x.tsv",
        "x.tsv",  # the data root itself
    ],
)
def test_upload_at_the_wrong_depth_or_in_an_outcome_folder_is_ignored(
    root: Path, relative: str
) -> None:
    decision = decide_sftpgo(sftpgo("upload", "acme", root / relative), root)
    assert_ignored(decision)


# -- rename ------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["x.tsv.filepart", ".sftpgo-upload.9.x.tsv", "old.tsv"])
def test_rename_to_a_device_file_ingests_the_target(root: Path, source: str) -> None:
    folder = root / "acme" / "c1" / SN
    decision = decide_sftpgo(sftpgo("rename", "acme", folder / source, folder / "x.tsv"), root)
    assert_ingest(decision, folder / "x.tsv", "acme", "c1", SN)


@pytest.mark.parametrize(
    "target", ["x.tsv.filepart", ".sftpgo-upload.123.x.tsv", "x.part", "parsed/x.tsv"]
)
def test_rename_to_a_temporary_or_processed_name_is_ignored(root: Path, target: str) -> None:
    folder = root / "acme" / "c1" / SN
    decision = decide_sftpgo(sftpgo("rename", "acme", folder / "x.tsv", folder / target), root)
    assert_ignored(decision)


def test_rename_without_a_target_is_ignored(root: Path) -> None:
    folder = root / "acme" / "c1" / SN
    assert_ignored(decide_sftpgo(sftpgo("rename", "acme", folder / "x.tsv", ""), root), "no path")


def test_rename_of_a_folder_is_ignored(root: Path) -> None:
    decision = decide_sftpgo(
        sftpgo("rename", "acme", root / "acme" / "c1", root / "acme" / "c2"), root
    )
    assert_ignored(decision)


# -- mkdir -------------------------------------------------------------------------


@pytest.mark.parametrize("campaign", ["c1", "Campaign-2026_01", "x" * 63, "0"])
def test_mkdir_of_a_campaign_folder_provisions(root: Path, campaign: str) -> None:
    decision = decide_sftpgo(sftpgo("mkdir", "acme", root / "acme" / campaign), root)
    assert decision.kind == "provision", decision.reason
    assert decision.subject == f"acme/{campaign}"
    assert decision.payload == {"company": "acme", "campaign": campaign}


def test_mkdir_with_a_trailing_slash_still_provisions(root: Path) -> None:
    decision = decide_sftpgo(sftpgo("mkdir", "acme", f"{root}/acme/c9/"), root)
    assert decision.kind == "provision"
    assert decision.payload == {"company": "acme", "campaign": "c9"}


@pytest.mark.parametrize(
    ("relative", "words"),
    [
        ("acme/c1/02001084", ("depth 3",)),  # device folder
        ("acme/c1/02001084/parsed", ("depth 4",)),
        ("acme/c1/02001084/error", ("depth 4",)),
        ("acme", ("depth 1",)),  # the company itself
        ("acme/parsed", ("'parsed'", "not allowed")),  # a campaign may not be called so
        ("acme/error", ("'error'",)),
    ],
)
def test_mkdir_of_any_other_folder_does_nothing(
    root: Path, relative: str, words: tuple[str, ...]
) -> None:
    assert_ignored(decide_sftpgo(sftpgo("mkdir", "acme", root / relative), root), *words)


def test_mkdir_of_the_data_root_does_nothing(root: Path) -> None:
    assert_ignored(decide_sftpgo(sftpgo("mkdir", "acme", root), root))


# -- other actions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    [
        "download",
        "first-download",
        "pre-download",
        "pre-upload",
        "delete",
        "pre-delete",
        "rmdir",
        "ssh_cmd",
        "copy",
        "",
        "UPLOAD",
        "upload ",
    ],
)
def test_every_other_action_is_ignored(root: Path, action: str) -> None:
    path = root / "acme" / "c1" / SN / "x.tsv"
    decision = decide_sftpgo(sftpgo(action, "acme", path, target=path), root)
    assert_ignored(decision, "not handled", repr(action))


def test_an_event_without_a_user_is_ignored(root: Path) -> None:
    path = root / "acme" / "c1" / SN / "x.tsv"
    assert_ignored(decide_sftpgo(sftpgo("upload", "", path), root), "USERNAME")
    env = sftpgo("upload", "acme", path)
    del env["SFTPGO_ACTION_USERNAME"]
    assert_ignored(decide_sftpgo(env, root), "USERNAME")


def test_an_empty_environment_is_ignored(root: Path) -> None:
    assert_ignored(decide_sftpgo({}, root))


# -- hostile paths ---------------------------------------------------------------------


@pytest.mark.parametrize("action", ["upload", "rename", "mkdir"])
def test_paths_outside_the_data_root_are_ignored(root: Path, action: str) -> None:
    sibling = root.parent / "data2" / "acme" / "c1" / SN  # shares the prefix "data"
    for path in (
        Path("/etc/passwd"),
        Path("/acme/c1") / SN / "x.tsv",
        sibling / "x.tsv",
        root.parent / "acme" / "c1",
    ):
        target = path if action == "rename" else ""
        decision = decide_sftpgo(sftpgo(action, "acme", path, target), root)
        assert_ignored(decision)


@pytest.mark.parametrize(
    "text",
    [
        "{root}/acme/c1/../../globex/g1/{sn}/x.tsv",
        "{root}/acme/../acme/c1/{sn}/x.tsv",
        "{root}/../data/acme/c1/{sn}/x.tsv",
        "{root}/acme/c1/./{sn}/x.tsv",
        "{root}//acme/c1/{sn}/x.tsv",
        "{root}/acme/c1/{sn}/../../../../etc/x.tsv",
    ],
)
def test_paths_with_dot_components_are_ignored(root: Path, text: str) -> None:
    path = text.format(root=root, sn=SN)
    for action in ("upload", "rename"):
        env = sftpgo(action, "acme", path, path if action == "rename" else "")
        assert_ignored(decide_sftpgo(env, root), "normal form")
    mkdir = text.format(root=root, sn=SN).rsplit("/", 2)[0]
    assert_ignored(decide_sftpgo(sftpgo("mkdir", "acme", mkdir), root))


@pytest.mark.parametrize("text", ["acme/c1/02001084/x.tsv", "./acme/c1", "x.tsv", "~/x.tsv"])
def test_relative_paths_are_ignored(root: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root)  # even where the relative path would land inside the tree
    for action in ("upload", "mkdir"):
        assert_ignored(decide_sftpgo(sftpgo(action, "acme", text), root), "not absolute")
    assert_ignored(decide_sftpgo(sftpgo("rename", "acme", "/x", text), root), "not absolute")


def test_a_symlinked_folder_leading_out_of_the_tree_is_ignored(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / SN).mkdir(parents=True)
    (outside / SN / "x.tsv").write_text("secret\n")
    (root / "acme" / "evil").symlink_to(outside)  # acme/evil/<sn>/x.tsv is really outside
    path = root / "acme" / "evil" / SN / "x.tsv"
    assert_ignored(decide_sftpgo(sftpgo("upload", "acme", path), root), "symbolic link")
    evil = root / "acme" / "evil"
    assert_ignored(decide_sftpgo(sftpgo("mkdir", "acme", evil), root), "symbolic link")


def test_a_symlinked_file_leading_out_of_the_tree_is_ignored(root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.tsv"
    secret.write_text("secret\n")
    link = root / "acme" / "c1" / SN / "x.tsv"
    link.symlink_to(secret)
    assert_ignored(decide_sftpgo(sftpgo("upload", "acme", link), root), "symbolic link")
    folder = root / "acme" / "c1" / SN
    decision = decide_sftpgo(sftpgo("rename", "acme", folder / "x.part", link), root)
    assert_ignored(decision, "symbolic link")


def test_a_symlink_into_another_company_is_refused(root: Path) -> None:
    (root / "acme" / "c1" / "peek").symlink_to(root / "globex" / "g1" / SN)
    path = root / "acme" / "c1" / "peek" / "x.tsv"
    assert_ignored(decide_sftpgo(sftpgo("upload", "acme", path), root), "symbolic link")
    # The watcher has no acting user to check: the link itself is the refusal.
    assert_ignored(decide_path("file", str(path), root), "symbolic link")


def test_a_data_root_reached_through_a_symlink_still_works(root: Path, tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    path = alias / "acme" / "c1" / SN / "x.tsv"
    real = root / "acme" / "c1" / SN / "x.tsv"
    assert_ingest(decide_sftpgo(sftpgo("upload", "acme", path), alias), real, "acme", "c1", SN)
    assert_ingest(decide_sftpgo(sftpgo("upload", "acme", real), alias), real, "acme", "c1", SN)


HOSTILE_NAMES = [
    "with space",
    "$(rm -rf ~)",
    "a;reboot",
    "a|b",
    "`id`",
    "a'b",
    'a"b',
    "a\\b",
    "café",
    "\uff41\uff43\uff4d\uff45",  # fullwidth "acme"
    "x" * 64,
    "-rf",
    "_leading",
    "a.b",
    "a:b",
    "a\tb",
    "a\rb",
    "$HOME",
    "*",
    "a=b",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_names_breaking_the_name_rule_are_ignored(root: Path, name: str) -> None:
    cases = [
        ("upload", f"{root}/{name}/c1/{SN}/x.tsv", name),  # company
        ("upload", f"{root}/acme/{name}/{SN}/x.tsv", "acme"),  # campaign
        ("upload", f"{root}/acme/c1/{name}/x.tsv", "acme"),  # device
        ("mkdir", f"{root}/{name}/c1", name),
        ("mkdir", f"{root}/acme/{name}", "acme"),
    ]
    for action, path, user in cases:
        decision = decide_sftpgo(sftpgo(action, user, path), root)
        assert_ignored(decision)
        assert "not allowed" in decision.reason or "normal form" in decision.reason, decision


@pytest.mark.parametrize("bad", ["\x00", "\n", "\x00/../../etc"])
def test_nul_or_newline_in_the_path_is_ignored(root: Path, bad: str) -> None:
    cases = [("upload", f"{root}/acme/c1{bad}/{SN}/x.tsv"), ("mkdir", f"{root}/acme/c{bad}1")]
    if "\x00" in bad:  # a newline in the file name alone is the worker's to set aside
        cases.append(("upload", f"{root}/acme/c1/{SN}/x{bad}.tsv"))
        target = f"{root}/acme/c1/{SN}/y{bad}.tsv"
        decision = decide_sftpgo(
            sftpgo("rename", "acme", f"{root}/acme/c1/{SN}/y.part", target), root
        )
        assert_ignored(decision, "control characters")
    for action, path in cases:
        assert_ignored(decide_sftpgo(sftpgo(action, "acme", path), root), "control characters")


@pytest.mark.parametrize("name", ["x\n.tsv", "x\t.tsv", "\udcff\udcfe.tsv"])
def test_a_file_name_powerview_cannot_represent_is_queued_to_be_set_aside(
    root: Path, name: str
) -> None:
    """Queued, not ignored: the worker moves it to error/ with the reason an operator sees."""
    path = f"{root}/acme/c1/{SN}/{name}"
    decision = decide_sftpgo(sftpgo("upload", "acme", path), root)
    assert decision.kind == "ingest", decision.reason
    assert decision.payload["path"] == path


def test_a_user_acting_in_another_companys_folder_is_ignored(root: Path) -> None:
    file = root / "globex" / "g1" / SN / "x.tsv"
    for env in (
        sftpgo("upload", "acme", file),
        sftpgo("rename", "acme", file.with_suffix(".part"), file),
        sftpgo("mkdir", "acme", root / "globex" / "g2"),
    ):
        assert_ignored(decide_sftpgo(env, root), "'acme'", "outside its folder")
    # ... while the owner itself may
    assert_ingest(decide_sftpgo(sftpgo("upload", "globex", file), root), file, "globex", "g1", SN)


def test_a_user_whose_name_only_starts_like_the_company_is_ignored(root: Path) -> None:
    path = root / "acme" / "c1" / SN / "x.tsv"
    for user in ("acm", "acme2", "ACME", "acme/c1"):
        assert_ignored(decide_sftpgo(sftpgo("upload", user, path), root))


# -- the username → company map ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("   ", {}),
        (",", {}),
        ("alice=acme", {"alice": "acme"}),
        ("alice=acme,bob=globex", {"alice": "acme", "bob": "globex"}),
        (" alice = acme , bob=globex ,", {"alice": "acme", "bob": "globex"}),
        ("alice=acme,alice=globex", {"alice": "globex"}),
        ("a.b@example.org=acme", {"a.b@example.org": "acme"}),
    ],
)
def test_parse_user_map(text: str, expected: dict[str, str]) -> None:
    assert parse_user_map(text) == expected


@pytest.mark.parametrize("text", ["alice", "alice=", "=acme", " = ", "alice=acme,bob", "a=b,=c"])
def test_parse_user_map_rejects_items_that_are_not_user_equals_company(text: str) -> None:
    with pytest.raises(ValueError, match="is not user=company"):
        parse_user_map(text)


def test_mapped_users_act_for_their_company(root: Path) -> None:
    users = parse_user_map("alice=acme,bob=globex")
    file = root / "acme" / "c1" / SN / "x.tsv"
    assert_ingest(
        decide_sftpgo(sftpgo("upload", "alice", file), root, users), file, "acme", "c1", SN
    )
    decision = decide_sftpgo(sftpgo("mkdir", "alice", root / "acme" / "c7"), root, users)
    assert decision.kind == "provision"
    assert decision.payload["company"] == "acme"
    # bob is globex's: not acme's, even though he is a known user
    assert_ignored(decide_sftpgo(sftpgo("upload", "bob", file), root, users), "'globex'")
    # the map replaces identity for mapped users: "acme" acting as a user is still itself
    assert_ingest(
        decide_sftpgo(sftpgo("upload", "acme", file), root, users), file, "acme", "c1", SN
    )
    # a user not in the map is its own company
    assert_ignored(decide_sftpgo(sftpgo("upload", "carol", file), root, users), "'carol'")


# -- the scan ------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, Path]:
    folder = root / "acme" / "c1" / SN
    files = {
        "waiting": folder / "a.tsv",
        "waiting_upper": folder / "B.TSV",
        "other_company": root / "globex" / "g1" / SN / "g.tsv",
        "filepart": folder / "b.tsv.filepart",
        "atomic": folder / ".sftpgo-upload.42.c.tsv",
        "parsed": folder / "parsed" / "d.tsv",
        "error": folder / "error" / "e.tsv",
        "not_tsv": folder / "notes.txt",
        "hidden_dir": folder / ".cache" / "h.tsv",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\n")
    (root / "acme" / "c2").mkdir()  # an empty campaign
    return files


def _collect(root: Path, **kwargs) -> tuple[list[Decision], int]:
    found: list[Decision] = []
    count = events.scan(root, found.append, **kwargs)
    return found, count


def test_scan_finds_campaigns_and_waiting_files_only(root: Path) -> None:
    files = _tree(root)
    found, count = _collect(root)
    assert count == len(found)
    ingest = sorted(d.subject for d in found if d.kind == "ingest")
    assert ingest == sorted(str(files[k]) for k in ("waiting", "waiting_upper", "other_company"))
    provision = sorted(d.subject for d in found if d.kind == "provision")
    assert provision == ["acme/c1", "acme/c2", "globex/g1"]
    assert [d for d in found if d.ignored] == []


def test_scan_reports_misplaced_files_as_ignored_decisions(root: Path) -> None:
    (root / "acme" / "c1" / "stray.tsv").write_text("x\n")
    (root / "acme" / "bad name" / SN).mkdir(parents=True)
    (root / "acme" / "bad name" / SN / "x.tsv").write_text("x\n")
    found, _ = _collect(root)
    assert [d.kind for d in found if not d.ignored] == ["provision", "provision"]
    assert len([d for d in found if d.ignored]) == 3  # the campaign "bad name", its file, stray


def test_scan_does_not_follow_symlinks_out_of_the_tree(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside" / SN
    outside.mkdir(parents=True)
    (outside / "x.tsv").write_text("x\n")
    (root / "acme" / "c1" / "evil").symlink_to(outside.parent)
    (root / "acme" / "c1" / SN / "link.tsv").symlink_to(outside / "x.tsv")
    found, _ = _collect(root)
    assert not [d for d in found if d.kind == "ingest"]


def test_scan_skips_files_younger_than_min_age(root: Path) -> None:
    files = _tree(root)
    old = time.time() - 120
    os.utime(files["waiting"], (old, old))
    found, _ = _collect(root, min_age_s=60)
    assert [d.subject for d in found if d.kind == "ingest"] == [str(files["waiting"])]


def test_scan_of_one_folder_judges_names_from_the_data_root(root: Path) -> None:
    """The watcher scans each new folder; the names still come from the data root."""
    files = _tree(root)
    for top in (root / "acme", root / "acme" / "c1", root / "acme" / "c1" / SN):
        found, _ = _collect(root, top=top)
        ingest = sorted(d.payload["path"] for d in found if d.kind == "ingest")
        assert ingest == sorted(str(files[k]) for k in ("waiting", "waiting_upper"))
        for decision in found:
            assert not decision.ignored, decision.reason
            assert decision.payload["company"] == "acme"
            assert decision.payload["campaign"] in ("c1", "c2")
    found, _ = _collect(root, top=root / "acme")
    assert sorted(d.subject for d in found if d.kind == "provision") == ["acme/c1", "acme/c2"]


def test_scan_of_an_empty_or_missing_tree(tmp_path: Path) -> None:
    assert _collect(tmp_path) == ([], 0)
    assert _collect(tmp_path / "missing") == ([], 0)


# -- still being written? --------------------------------------------------------------------


def _settled(path: Path, text: str = "x\n") -> Path:
    path.write_text(text)
    old = time.time() - 60
    os.utime(path, (old, old))
    return path


def test_a_recently_modified_file_is_busy(root: Path) -> None:
    path = root / "acme" / "c1" / SN / "x.tsv"
    path.write_text("x\n")
    busy = events.still_being_written(path, settle_s=30)
    assert busy is not None
    assert busy.startswith("modified")
    assert busy.endswith("s ago")


def test_a_closed_settled_file_is_finished(root: Path) -> None:
    path = _settled(root / "acme" / "c1" / SN / "x.tsv")
    assert events.still_being_written(path, settle_s=30) is None
    assert events.still_being_written(path, settle_s=0) is None


def test_a_missing_file_is_not_busy(root: Path) -> None:
    assert events.still_being_written(root / "nope.tsv", settle_s=30) is None


HOLDER = """
import sys, time
mode = sys.argv[2]
with open(sys.argv[1], mode) as f:
    print("open", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.parametrize(("mode", "expected"), [("a", "open for writing"), ("r", None)])
def test_a_file_held_open_by_another_process(root: Path, mode: str, expected: str | None) -> None:
    path = _settled(root / "acme" / "c1" / SN / "x.tsv")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "open\n"
        os.utime(path, (time.time() - 60, time.time() - 60))  # "a" may not touch mtime; be sure
        assert events.still_being_written(path, settle_s=1) == expected
    finally:
        holder.communicate("\n", timeout=10)
    assert holder.returncode == 0
    assert events.still_being_written(path, settle_s=1) is None  # closed: finished
