"""The pure parts of the OpenSSH accounts: names, fstab lines, settings (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from powerview import settings as config
from powerview.exceptions import AccountError, ConfigError, NameRuleError
from powerview.provision.openssh import account_for, fstab_line, fstab_targets, user_for


def test_a_company_s_user_is_its_name_or_the_one_user_mapped_to_it() -> None:
    assert user_for("acme", {}) == "acme"
    assert user_for("acme", {"alice": "acme", "bob": "globex"}) == "alice"
    with pytest.raises(AccountError, match="maps alice, carol to 'acme'"):
        user_for("acme", {"alice": "acme", "carol": "acme"})
    # The user named like the company belongs to another one: no account may take it.
    with pytest.raises(AccountError, match="belongs to company 'globex'"):
        user_for("acme", {"acme": "globex"})


@pytest.mark.parametrize(
    ("company", "user_map"),
    [
        ("../etc", ""),
        ("acme;rm", ""),
        ("powerview_meta", ""),
        ("acme", "-oProxyCommand=acme"),
        ("acme", "al ice=acme"),
    ],
)
def test_names_are_checked_before_anything_runs(company: str, user_map: str) -> None:
    settings = config.load(POWERVIEW_USER_COMPANY_MAP=user_map)
    with pytest.raises(NameRuleError):
        account_for(settings, company)


def test_the_account_s_paths_follow_the_settings(tmp_path: Path) -> None:
    settings = config.load(
        POWERVIEW_DATA_ROOT=str(tmp_path / "data"),
        POWERVIEW_CHROOT_BASE="/srv/x/chroot",
        POWERVIEW_AUTHORIZED_KEYS_DIR="/etc/ssh/keys",
        POWERVIEW_USER_COMPANY_MAP="alice=acme",
    )
    account = account_for(settings, "acme")
    assert account.user == "alice"
    assert account.folder == tmp_path.resolve() / "data" / "acme"
    assert account.chroot == Path("/srv/x/chroot/alice")
    assert account.mount_point == Path("/srv/x/chroot/alice/alice")
    assert account.keys_file == Path("/etc/ssh/keys/alice")
    assert account.home == "/alice"  # internal-sftp -d /%u starts there


def test_fstab_lines_escape_what_would_split_a_field() -> None:
    line = fstab_line(Path("/srv/my data/acme"), Path("/srv/chroot/acme/acme"))
    assert line == r"/srv/my\040data/acme /srv/chroot/acme/acme none bind 0 0"
    assert fstab_line(Path("/a\\b"), Path("/c\td")) == r"/a\134b /c\011d none bind 0 0"


def test_fstab_entries_are_found_by_their_target_only() -> None:
    target = Path("/srv/chroot/my acme/acme")
    text = "\n".join(
        [
            "# /srv/x /srv/chroot/my\\040acme/acme none bind 0 0",
            "UUID=1234 / ext4 defaults 0 1",
            "/srv/data/acme /srv/chroot/my\\040acme/acme none bind 0 0",
            "",
            "/srv/data/other\t/srv/chroot/my\\040acme/acme  none bind 0 0",
            "/srv/data/acme /srv/chroot/my\\040acme/acme2 none bind 0 0",
        ]
    )
    assert fstab_targets(text, target) == [2, 4]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("POWERVIEW_CHROOT_BASE", "srv/chroot"),
        ("POWERVIEW_AUTHORIZED_KEYS_DIR", "keys"),
        ("POWERVIEW_FSTAB", "fstab"),
        ("POWERVIEW_UPLOAD_GROUP", "upload group"),
        ("POWERVIEW_UPLOAD_GROUP", "-g"),
    ],
)
def test_bad_account_settings_are_refused_when_loaded(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        config.load(**{variable: value})
