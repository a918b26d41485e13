"""The data tree: the name rule, where a file sits, candidates, and outcome moves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from powerview.exceptions import NameRuleError
from powerview.layout import (
    check_name,
    data_root_for,
    find_files,
    is_candidate,
    locate,
)
from powerview.upload_file import OutcomeFolder, open_upload


@pytest.mark.parametrize(
    "name",
    ["acme", "ACME-2", "a", "0", "a_b", "acme-corp_2", "02001171", "x" * 63, "campaign1"],
)
def test_check_name_accepts(name: str) -> None:
    assert check_name("company", name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        " acme",
        "acme ",
        "ac me",
        "a.b",
        ".",
        "..",
        ".hidden",
        "a/b",
        "../etc",
        "-acme",
        "_acme",
        "écurie",
        "acme\u00a0",  # no-break space
        "\uff41\uff43\uff4d\uff45",  # fullwidth letters
        "٣",  # Arabic-Indic digit
        "x" * 64,
        "parsed",
        "error",
        "$(x)",
        "`x`",
        "a;b",
        "a|b",
        "a&b",
        "a*",
        "a'b",
        'a"b',
        "a\\b",
        "acme\n",  # `$` would let a final newline through; fullmatch must not
        "a\nb",
        "a\tb",
        "a\x00b",
        "{a}",
        "a:b",
        "a%2e",
    ],
)
def test_check_name_rejects(name: str) -> None:
    with pytest.raises(NameRuleError) as raised:
        check_name("campaign", name)
    message = str(raised.value)
    assert message.startswith(f"campaign name {name!r} is not allowed")
    assert "letters, digits" in message
    assert isinstance(raised.value, ValueError)


# -- locate ----------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    return data


def put(path: Path, content: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def test_locate_a_device_file(root: Path) -> None:
    path = put(root / "acme" / "campaign1" / "02001084" / "T302 (1).tsv")
    location = locate(path, root)
    assert (location.company, location.campaign, location.device_sn) == (
        "acme",
        "campaign1",
        "02001084",
    )
    assert location.path == path
    assert location.data_root == root
    assert location.device_dir == root / "acme" / "campaign1" / "02001084"


@pytest.mark.parametrize(
    "relative",
    [
        "f.tsv",
        "acme/f.tsv",
        "acme/campaign1/f.tsv",
        "acme/campaign1/02001084/parsed/f.tsv",
        "acme/campaign1/02001084/extra/deeper/f.tsv",
    ],
)
def test_locate_rejects_wrong_depths(root: Path, relative: str) -> None:
    with pytest.raises(NameRuleError, match=r"<company>/<campaign>/<device_sn>/<file>\.tsv"):
        locate(put(root / relative), root)


@pytest.mark.parametrize(
    ("relative", "kind"),
    [
        ("ac me/c1/02001084/f.tsv", "company"),
        ("parsed/c1/02001084/f.tsv", "company"),
        ("acme/c.1/02001084/f.tsv", "campaign"),
        ("acme/$(reboot)/02001084/f.tsv", "campaign"),
        ("acme/c1/-02001084/f.tsv", "device"),
        ("acme/c1/error/f.tsv", "device"),
    ],
)
def test_locate_checks_every_name(root: Path, relative: str, kind: str) -> None:
    with pytest.raises(NameRuleError, match=f"^{kind} name"):
        locate(put(root / relative), root)


def test_locate_outside_the_root(tmp_path: Path, root: Path) -> None:
    outside = put(tmp_path / "other" / "acme" / "c1" / "02001084" / "f.tsv")
    with pytest.raises(NameRuleError, match="outside the data root"):
        locate(outside, root)
    dotted = root / "acme" / ".." / ".." / "other" / "acme" / "c1" / "02001084" / "f.tsv"
    with pytest.raises(NameRuleError, match="outside the data root"):
        locate(dotted, root)


def test_locate_follows_symlinks_out_of_the_root(tmp_path: Path, root: Path) -> None:
    put(tmp_path / "elsewhere" / "f.tsv")
    (root / "acme" / "c1").mkdir(parents=True)
    (root / "acme" / "c1" / "02001084").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(NameRuleError, match="outside the data root"):
        locate(root / "acme" / "c1" / "02001084" / "f.tsv", root)


# -- candidates --------------------------------------------------------------------

DEVICE = Path("/data/acme/c1/02001084")


@pytest.mark.parametrize(
    ("name", "candidate"),
    [
        ("T302_251012_031720.tsv", True),
        ("T302_UPPER.TSV", True),
        ("with space.tsv", True),
        (".sftpgo-upload.T302.tsv", False),
        (".T302.tsv", False),
        ("T302.tsv.filepart", False),
        ("T302.tsv.part", False),
        ("T302.tsv.tmp", False),
        ("T302.csv", False),
        ("T302.tsv.bak", False),
        ("T302", False),
    ],
)
def test_is_candidate(name: str, candidate: bool) -> None:
    assert is_candidate(DEVICE / name) is candidate


@pytest.mark.parametrize("outcome", ["parsed", "error"])
def test_processed_files_are_not_candidates(outcome: str) -> None:
    assert not is_candidate(DEVICE / outcome / "T302.tsv")


def test_find_files_skips_outcomes_temporaries_and_dot_folders(root: Path) -> None:
    device = root / "acme" / "c1" / "02001084"
    wanted = [
        put(device / "b.tsv"),
        put(device / "a.tsv"),
        put(root / "acme" / "c2" / "9" / "c.tsv"),
    ]
    for name in [
        "parsed/old.tsv",
        "error/bad.tsv",
        ".sftpgo-upload.d.tsv",
        "e.tsv.filepart",
        "notes.txt",
        ".cache/f.tsv",
        "parsed/deeper/g.tsv",
    ]:
        put(device / name)
    found = list(find_files([root]))
    assert found == sorted(wanted)
    assert found[0].name == "a.tsv"


def test_find_files_keeps_explicit_files_and_walks_several_folders(root: Path) -> None:
    one = put(root / "acme" / "c1" / "1" / "x.tsv")
    two = put(root / "beta" / "c1" / "2" / "y.tsv")
    explicit = put(root / "acme" / "c1" / "1" / "parsed" / "z.tsv")
    assert list(find_files([root / "beta", explicit, root / "acme"])) == [two, explicit, one]


# -- outcome moves -------------------------------------------------------------------


def move_to_outcome(root: Path, path: Path, outcome: OutcomeFolder) -> Path:
    """What the worker does after ingesting: open from the root, move by descriptor."""
    with open_upload(root, path) as upload:
        return upload.move_to(outcome)


def finish_interrupted_move(root: Path, path: Path) -> Path | None:
    with open_upload(root, path) as upload:
        return upload.finish_interrupted_move()


def test_move_never_overwrites(root: Path) -> None:
    device = root / "acme" / "c1" / "02001084"
    first = move_to_outcome(root, put(device / "T302.tsv", "one"), "parsed")
    assert first == device / "parsed" / "T302.tsv"
    second = move_to_outcome(root, put(device / "T302.tsv", "two"), "parsed")
    assert second == device / "parsed" / "T302.1.tsv"
    third = move_to_outcome(root, put(device / "T302.tsv", "three"), "parsed")
    assert third == device / "parsed" / "T302.2.tsv"
    assert [p.read_text() for p in (first, second, third)] == ["one", "two", "three"]
    assert not (device / "T302.tsv").exists()
    assert sorted(p.name for p in (device / "parsed").iterdir()) == [
        "T302.1.tsv",
        "T302.2.tsv",
        "T302.tsv",
    ]


def test_move_to_error_and_names_with_dots(root: Path) -> None:
    device = root / "acme" / "c1" / "02001084"
    put(device / "error" / "a.b.tsv", "earlier")
    moved = move_to_outcome(root, put(device / "a.b.tsv", "later"), "error")
    assert moved == device / "error" / "a.b.1.tsv"
    assert (device / "error" / "a.b.tsv").read_text() == "earlier"
    assert moved.read_text() == "later"


def test_finish_interrupted_move_drops_the_stale_name(root: Path) -> None:
    device = root / "acme" / "c1" / "02001084"
    source = put(device / "T302.tsv", "data")
    (device / "parsed").mkdir()
    put(device / "parsed" / "T302.tsv", "an earlier file of the same name")
    # The crash came after link(), before unlink(): the file was linked as T302.1.tsv.
    os.link(source, device / "parsed" / "T302.1.tsv")
    assert finish_interrupted_move(root, source) == device / "parsed" / "T302.1.tsv"
    assert not source.exists()
    assert (device / "parsed" / "T302.1.tsv").read_text() == "data"
    assert (device / "parsed" / "T302.tsv").read_text() == "an earlier file of the same name"


def test_finish_interrupted_move_in_error(root: Path) -> None:
    device = root / "acme" / "c1" / "02001084"
    source = put(device / "T302.tsv", "data")
    (device / "error").mkdir()
    os.link(source, device / "error" / "T302.tsv")
    assert finish_interrupted_move(root, source) == device / "error" / "T302.tsv"
    assert not source.exists()


def test_finish_interrupted_move_leaves_other_files_alone(root: Path, tmp_path: Path) -> None:
    device = root / "acme" / "c1" / "02001084"
    single = put(device / "single.tsv")
    assert finish_interrupted_move(root, single) is None
    assert single.exists()
    linked = put(device / "linked.tsv")
    os.link(linked, tmp_path / "backup.tsv")  # a second name, but not in parsed/ or error/
    (device / "parsed").mkdir()
    put(device / "parsed" / "linked.tsv")  # same name, another file
    assert finish_interrupted_move(root, linked) is None
    assert linked.exists()


def _tree(tmp_path: Path) -> Path:
    """A data tree with one device file: <root>/acme/c1/02001171/T302_x.tsv."""
    device = tmp_path / "root" / "acme" / "c1" / "02001171"
    device.mkdir(parents=True)
    (device / "T302_x.tsv").write_text("START_HEADER\n")
    return tmp_path / "root"


@pytest.mark.parametrize("depth", [0, 1, 2, 3, 4])
def test_data_root_for_a_path_is_the_root_its_place_in_the_layout_implies(
    tmp_path: Path, depth: int
) -> None:
    root = _tree(tmp_path)
    given = root.joinpath(*["acme", "c1", "02001171", "T302_x.tsv"][:depth])
    elsewhere = tmp_path / "configured"

    assert data_root_for((given,), None, elsewhere) == root.resolve()


def test_data_root_for_prefers_the_option_then_the_configured_root(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    device = root / "acme" / "c1" / "02001171"
    other = tmp_path / "other"

    assert data_root_for((device,), other, root) == other
    assert data_root_for((device,), None, root) == root
