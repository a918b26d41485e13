"""PowerView's exceptions, one hierarchy so the CLI maps each kind to a status.

    PowerViewError
    ├── ConfigError              a setting is missing or malformed
    ├── NameRuleError            a company, campaign or device name breaks the name rule
    ├── UnsafeUploadError        an upload reached through a link, or not a plain file
    ├── FormatError              a device file's content cannot be used → `error/`
    │   ├── IncompleteFileError      a block file without its closing END_DATA
    │   └── InfluxRejectedError      InfluxDB refused the lines themselves (400, 413, 422)
    ├── InfluxRequestError       InfluxDB refused a request for a reason on our side that a
    │                            retry will not fix: the token (401, 403), a missing org or
    │                            bucket (404), another 4xx
    ├── InfrastructureError      a server or the filesystem failed; retry later
    │   ├── InfluxUnavailableError   InfluxDB unreachable, timed out, or 5xx/429
    │   ├── GrafanaUnavailableError  Grafana unreachable or failing
    │   └── SpoolError               the hook could queue its event nowhere, not even the spool
    ├── GrafanaError             Grafana refused a provisioning request (4xx, a conflict)
    ├── PlaybookError            an Ansible playbook could not run or one of its tasks failed
    ├── StackError               the local InfluxDB could not be installed, started or stopped
    ├── HostSetupError           `powerview deploy` could not set up a user, folder or file
    ├── SftpgoError              SFTPGo's REST API refused a request or could not be reached
    ├── AccountError             a company's OpenSSH system account cannot be made or removed:
                                 a system tool failed, or the system is unsafe for it (a
                                 chroot path others can write to, a user that is not a company's)
    └── ReportError              a campaign report cannot be made: no data in the period,
                                 a format with no writer, a bad report option

Which errors send a file to `error/`: only `FormatError`, `NameRuleError` and
`UnsafeUploadError`, the fault of the file or of its client (an upload reached
through a link is left where it is instead; see ingest.py). Everything else
leaves the file where it is and a later run retries it: an `InfrastructureError`
heals by itself, an `InfluxRequestError` once the deployment is fixed (a revoked
token is not a reason to reject good data).

Each boundary translating a third-party error raises `from exc`, so
`powerview --traceback` shows what really failed underneath.
"""

from __future__ import annotations


class PowerViewError(Exception):
    """Base of every error PowerView raises on purpose."""


class ConfigError(PowerViewError):
    """A setting is missing or malformed; the message names the variable."""


class NameRuleError(PowerViewError, ValueError):
    """A name taken from a path does not follow the name rule."""


class UnsafeUploadError(PowerViewError):
    """An upload (or a folder on its way) is a link or not a plain file: never followed."""


class FormatError(PowerViewError):
    """The content of a device file cannot be used; the file goes to `error/`."""


class IncompleteFileError(FormatError):
    """A block file has no closing END_DATA: an upload still running or cut short."""


class InfluxRejectedError(FormatError):
    """InfluxDB refused the data itself (400/413/422: a bad line, a field type conflict)."""


class InfluxRequestError(PowerViewError):
    """InfluxDB refused a request for a client-side reason a retry will not fix.

    Not the data's fault (that is `InfluxRejectedError`) and not an outage: the
    token, org or bucket of the deployment is wrong. Ingestion defers the file.
    """


class InfrastructureError(PowerViewError):
    """A server or the filesystem failed; the work must be retried, not rejected."""


class InfluxUnavailableError(InfrastructureError):
    """InfluxDB cannot be reached, timed out, or failed on its side (5xx, 429)."""


class GrafanaUnavailableError(InfrastructureError):
    """Grafana cannot be reached or failed on its side."""


class SpoolError(InfrastructureError):
    """The hook's event could be written neither to the queue nor to the spool."""


class GrafanaError(PowerViewError):
    """Grafana refused a provisioning request, or its state stops provisioning."""


class PlaybookError(PowerViewError):
    """An Ansible playbook could not be run, or one of its tasks failed."""


class StackError(PowerViewError):
    """The local InfluxDB stack could not be installed, started or stopped."""


class HostSetupError(PowerViewError):
    """A deployment step failed: a `useradd` refused, a link where a folder belongs."""


class SftpgoError(PowerViewError):
    """SFTPGo's REST API refused a request or could not be reached; the message says which."""


class AccountError(PowerViewError):
    """A company's OpenSSH account (user, chroot, bind mount, keys) cannot be made or removed.

    Either a system tool (useradd, mount, ssh-keygen, ...) failed, its output in the
    message, or PowerView refuses to act: a chroot path sshd would reject, an existing
    user that is not a company's, a key that is not an OpenSSH public key.
    """


class ReportError(PowerViewError):
    """A campaign report cannot be made as asked (no data, no writer for the format)."""
