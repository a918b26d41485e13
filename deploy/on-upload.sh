#!/bin/sh
# SFTPGo's command hook for PowerView (common.actions: upload, rename, mkdir).
#
# SFTPGo runs this with a cleared environment: only the SFTPGO_ACTION* variables
# and the entries of SFTPGO_COMMAND__COMMANDS__0__ENV (deploy/sftpgo.env) are set.
# It is a shim rather than `powerview hook` itself for one reason: the umask.
# The hook runs as SFTPGo's user and may be the first to create the queue file
# in the state folder (SQLite gives its -wal and -shm files the same mode), which
# the worker, running as the powerview user, must be able to write too. With the
# state folder setgid to the powerview group and this umask, whatever the hook
# creates stays group-writable. POWERVIEW_BIN is only for trying the shim out.
#
# `powerview hook` validates the event, queues a job and exits 0 (also for the
# events it ignores) in well under a second; the worker does the work.
umask 0007
exec "${POWERVIEW_BIN:-/opt/powerview/.venv/bin/powerview}" hook
