"""PowerView's exceptions, one hierarchy so the CLI maps each kind to a status.

    PowerViewError
    ├── ConfigError          a setting is missing or malformed
    ├── NameRuleError        a company, campaign or device name breaks the name rule
    ├── UnsafeUploadError    an upload reached through a link, or not a plain file
    ├── FormatError          a device file cannot be read as any known format
    │   └── IncompleteFileError   a block file without its closing END_DATA
    ├── InfrastructureError  a server or the filesystem failed; retry later
    │   ├── InfluxUnavailableError   InfluxDB unreachable or refusing (5xx, 429)
    │   └── InfluxWriteError         InfluxDB rejected a write for a client-side reason
    ├── StackError           the local InfluxDB could not be installed, started or stopped
    └── SftpgoError          SFTPGo's REST API refused a request or could not be reached

Infrastructure errors never send a file to `error/`: the file stays put and a
later run retries it. Format errors always do.
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


class InfrastructureError(PowerViewError):
    """A server or the filesystem failed; the work must be retried, not rejected."""


class InfluxUnavailableError(InfrastructureError):
    """InfluxDB cannot be reached, or refused for a server-side reason."""


class InfluxWriteError(InfrastructureError):
    """InfluxDB refused a request for a reason a retry will not fix (auth, 4xx)."""


class StackError(PowerViewError):
    """The local InfluxDB stack could not be installed, started or stopped."""


class SftpgoError(PowerViewError):
    """SFTPGo's REST API refused a request or could not be reached; the message says which."""
