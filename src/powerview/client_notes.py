"""What a client reads beside a rejected file: `<file>.reason.txt` in `error/`.

The JSON report is the operator's; a company only sees its own SFTP folder.
So each file set aside in `error/` gets a short plain-text note there: what
was wrong (the report's reason, which names the line or the limit when it is
known), and what to do about it. Written by `Upload.write_note`, safely.
"""

from __future__ import annotations

import datetime as dt

# What to do, by what was wrong: the first match in the reason wins.
_ADVICE: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("incomplete file",),
        "The upload was cut short and was not completed in time. Upload the whole"
        " file again under the same name in the device folder.",
    ),
    (
        ("file name",),
        "Rename the file (letters, digits, '-', '_' and '.' are safe) and upload it again.",
    ),
    (
        ("hard-linked",),
        "Upload the file itself (a plain copy), not a second name for another file.",
    ),
    (
        ("folder name", "company name", "not in a device folder"),
        "Upload into <campaign>/<device serial>/ folders whose names use only letters,"
        " digits, '-' and '_'.",
    ),
    (
        ("worker process",),
        "The file could not be read within PowerView's limits. Contact your PowerView"
        " operator with the file name.",
    ),
    (
        ("longer than", "POWERVIEW_MAX_"),
        "The file is larger than PowerView accepts. Split it into smaller files (one"
        " day per file, as the device writes them) and upload them again.",
    ),
)
_DEFAULT_ADVICE = (
    "Check that it is an unmodified export of the device, correct it or export it"
    " again, and upload it again under its name in the device folder."
)


def advice(reason: str) -> str:
    """What the client can do about a file rejected for `reason`."""
    lowered = reason.lower()
    for needles, text in _ADVICE:
        if any(needle.lower() in lowered for needle in needles):
            return text
    return _DEFAULT_ADVICE


def reason_note(file_name: str, reason: str, when: dt.datetime | None = None) -> str:
    """The text of `<file>.reason.txt`: what happened, why, what to do."""
    moment = (when or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return (
        f"PowerView did not ingest {file_name} ({moment:%Y-%m-%d %H:%M} UTC).\n"
        f"\n"
        f"Why: {reason}\n"
        f"\n"
        f"What to do: {advice(reason)} This copy stays here in error/ for reference.\n"
    )
