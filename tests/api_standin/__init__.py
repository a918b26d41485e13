"""What the vendor API stand-ins share, for tests only (never shipped).

The Grafana and SFTPGo stand-ins (``tests/grafana_standin``,
``tests/sftpgo_standin``) both serve a vendor's HTTP API from memory on a
threaded Werkzeug server and check every request and response against the
vendor's OpenAPI description. This package holds that common machinery; each
stand-in keeps its routes, state, auth, leniencies and error bodies. See ``README.md``.
"""
