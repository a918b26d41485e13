"""Check every request and response against SFTPGo's OpenAPI description.

The spec (``tests/specs/sftpgo-openapi-2.7.0.yaml``, vendored unmodified) is
loaded and checked once per process (:func:`load_validator`, about 1.5 s) by the
shared validator (``tests/api_standin/validation.py``). Its server URL is the
relative ``/api/v2``, which openapi-core resolves against each request's host,
so one instance serves any port.

No leniency: what does not match the spec is a violation. Authentication is not
judged here (the spec's ``BearerAuth``/``APIKeyAuth``/``BasicAuth``): the
stand-in's auth layer answers SFTPGo's 401 itself instead of a 400.
"""

from __future__ import annotations

import functools
from pathlib import Path

from tests.api_standin.validation import OpenApiValidator, Violation, read_spec, spec_file

__all__ = ["SpecValidator", "Violation", "load_validator", "spec_path"]

SPEC_ENV = "POWERVIEW_SFTPGO_SPEC"
# Vendored under tests/specs/ (origin and licence in its README).
DEFAULT_SPEC = Path(__file__).resolve().parents[1] / "specs" / "sftpgo-openapi-2.7.0.yaml"

# No leniency, so the shared validator as it is.
SpecValidator = OpenApiValidator


def spec_path() -> Path:
    return spec_file(SPEC_ENV, DEFAULT_SPEC)


@functools.cache
def load_validator() -> SpecValidator:
    """The process-wide validator (loading and checking the spec takes about 1.5 s)."""
    return SpecValidator(read_spec(SPEC_ENV, DEFAULT_SPEC, "SFTPGo"))
