"""The SDK's configuration, parsed in one place, as the TypeScript SDK's
config.ts: ``connect()`` options (server address, bearer token, CA file) and
``config.jobs``, DataJoint's job settings with DataJoint's defaults. This is
the only module that reads ``os.environ``; every ``POPULUS_*`` variable is
read here (at the first use of ``config.jobs``, at ``connect()`` for the address)
and validated with a message naming the variable and the fix.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

from populus.errors import InvalidConfigError

DEFAULT_URL = "http://127.0.0.1:50051"
"""The address ``connect()`` uses when neither ``url`` nor ``POPULUS_URL`` is set."""


def _non_empty(v: str | None) -> str | None:
    return None if v is None or v.strip() == "" else v.strip()


@dataclass(frozen=True)
class ConnectOptions:
    """``connect()`` options with every default applied."""

    url: str
    """The server's base URL, without a trailing slash."""
    target: str
    """host:port, as gRPC dials it."""
    tls: bool
    """True for an https:// URL."""
    token: str | None
    """The bearer token sent with every call, or None."""
    ca: bytes | None
    """PEM of the CA that signed the server's certificate, or None for the system's trust store."""


def resolve_connect_options(url: str | None = None, token: str | None = None, ca_file: str | None = None) -> ConnectOptions:
    """Applies defaults (``POPULUS_URL``, ``POPULUS_TOKEN``, ``POPULUS_CA_FILE``)
    and validates; raises InvalidConfigError naming the option or variable."""
    option = "url" if url is not None else "POPULUS_URL"
    raw = url if url is not None else (_non_empty(os.environ.get("POPULUS_URL")) or DEFAULT_URL)
    if not isinstance(raw, str):
        raise InvalidConfigError(f"url must be a string such as http://127.0.0.1:50051, got {raw!r}")
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https"):
        raise InvalidConfigError(f'{option}: "{raw}" must start with http:// or https://, e.g. http://127.0.0.1:50051')
    try:
        port = parts.port
    except ValueError:
        raise InvalidConfigError(f'{option}: "{raw}" has a bad port') from None
    if not parts.hostname:
        raise InvalidConfigError(f'{option}: "{raw}" names no host; use e.g. http://127.0.0.1:50051')
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        # gRPC has no path prefix: the service path is fixed (/populus.v1.JobService/...).
        raise InvalidConfigError(f'{option}: "{raw}" has a path; the Python client speaks gRPC, which serves at the root (use http://host:port)')
    tls = parts.scheme == "https"
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    target = f"{host}:{port if port is not None else (443 if tls else 80)}"
    ca_option = "ca_file" if ca_file is not None else "POPULUS_CA_FILE"
    ca_path = ca_file if ca_file is not None else _non_empty(os.environ.get("POPULUS_CA_FILE"))
    ca = _read_pem(ca_path, ca_option) if ca_path is not None else None
    resolved_token = token if token is not None else _non_empty(os.environ.get("POPULUS_TOKEN"))
    return ConnectOptions(url=raw.strip().rstrip("/"), target=target, tls=tls, token=resolved_token, ca=ca)


def _read_pem(path: str, option: str) -> bytes:
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as err:
        raise InvalidConfigError(f'{option}: cannot read "{path}" ({err.strerror})') from None
    if b"-----BEGIN CERTIFICATE-----" not in text:
        raise InvalidConfigError(f'{option} "{path}": not a PEM certificate (no "-----BEGIN CERTIFICATE-----" line)')
    return text


_DEFAULTS: dict[str, Any] = {
    "auto_refresh": True,
    "refresh_interval": 0,
    "keep_completed": False,
    "stale_timeout": 3600,
    "default_priority": 5,
    "version_method": None,
}


def _check_bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise InvalidConfigError(f"{name} must be True or False, got {v!r}")
    return v


def _check_stale_timeout(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise InvalidConfigError(f"{name} must be a number of seconds >= 0, got {v!r}")
    return v


MAX_REFRESH_INTERVAL_S = 86_400
"""The longest ``refresh_interval``: a day, ClaimRefresh's bound on min_interval."""


def _check_refresh_interval(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= MAX_REFRESH_INTERVAL_S:
        raise InvalidConfigError(f"{name} must be a number of seconds from 0 to {MAX_REFRESH_INTERVAL_S}, got {v!r}")
    return v


def _check_priority(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255:
        raise InvalidConfigError(f"{name} must be an integer from 0 (most urgent) to 255, got {v!r}")
    return v


def _check_version_method(name: str, v: Any) -> str | None:
    if v is not None and v != "git":
        raise InvalidConfigError(f'{name} must be None or "git", got {v!r}')
    return v


_CHECKS = {
    "auto_refresh": _check_bool,
    "refresh_interval": _check_refresh_interval,
    "keep_completed": _check_bool,
    "stale_timeout": _check_stale_timeout,
    "default_priority": _check_priority,
    "version_method": _check_version_method,
}


class JobsConfig:
    """DataJoint's job settings. Each attribute validates on assignment
    (``config.jobs.keep_completed = True``; a bad value raises
    InvalidConfigError and leaves the setting as it was). Initial values come
    from the environment, else DataJoint's defaults:

    ======================  ============================  =========
    setting                 environment variable          default
    ======================  ============================  =========
    ``auto_refresh``        ``POPULUS_AUTO_REFRESH``      ``True``
    ``refresh_interval``    ``POPULUS_REFRESH_INTERVAL``  ``0``
    ``keep_completed``      ``POPULUS_KEEP_COMPLETED``    ``False``
    ``stale_timeout``       ``POPULUS_STALE_TIMEOUT``     ``3600``
    ``default_priority``    ``POPULUS_DEFAULT_PRIORITY``  ``5``
    ``version_method``      ``POPULUS_VERSION_METHOD``    ``None``
    ======================  ============================  =========

    - ``auto_refresh``: populate refreshes the key source first.
    - ``refresh_interval``: seconds, 0 to 86400. ``populate(reserve_jobs=True)``
      skips its refresh (and goes straight to reserving) when a refresh of the
      table by any populate finished less than this long ago. Whatever it is,
      such a populate never refreshes while another one's refresh of the table
      is running, in this process or on any other worker.
    - ``keep_completed``: keep job rows with status success (``jobs.completed``).
    - ``stale_timeout``: seconds; refresh removes jobs older than this whose
      key left the key source.
    - ``default_priority``: priority of jobs added by refresh, 0-255, lower is
      more urgent.
    - ``version_method``: ``"git"`` records ``git rev-parse --short HEAD``
      with each job.
    """

    __slots__ = tuple(f"_{name}" for name in _DEFAULTS)

    def __init__(self, **initial: Any) -> None:
        unknown = set(initial) - set(_DEFAULTS)
        if unknown:
            raise InvalidConfigError(f"config.jobs has no setting {sorted(unknown)[0]!r}; settings: {', '.join(_DEFAULTS)}")
        for name, default in _DEFAULTS.items():
            object.__setattr__(self, f"_{name}", _CHECKS[name](f"config.jobs.{name}", initial.get(name, default)))

    def __getattr__(self, name: str) -> Any:
        if name in _DEFAULTS:
            return object.__getattribute__(self, f"_{name}")
        raise AttributeError(f"config.jobs has no setting {name!r}; settings: {', '.join(_DEFAULTS)}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _DEFAULTS:
            raise InvalidConfigError(f"config.jobs has no setting {name!r}; settings: {', '.join(_DEFAULTS)}")
        object.__setattr__(self, f"_{name}", _CHECKS[name](f"config.jobs.{name}", value))

    def set(self, **settings: Any) -> None:
        """Sets several settings at once, all validated before any is changed."""
        checked = JobsConfig(**{**self.snapshot(), **settings})
        for name in _DEFAULTS:
            object.__setattr__(self, f"_{name}", getattr(checked, name))

    def snapshot(self) -> dict[str, Any]:
        """A plain copy of the current settings (as handed to child processes)."""
        return {name: getattr(self, name) for name in _DEFAULTS}

    def __repr__(self) -> str:
        return f"JobsConfig({', '.join(f'{k}={v!r}' for k, v in self.snapshot().items())})"


def jobs_settings_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Parses the ``POPULUS_*`` job variables; raises InvalidConfigError naming the variable."""
    out: dict[str, Any] = {}

    def boolean(name: str) -> bool | None:
        raw = _non_empty(env.get(name))
        if raw is None:
            return None
        v = raw.lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off"):
            return False
        raise InvalidConfigError(f'{name} must be true or false (or 1/0, yes/no, on/off), got "{raw}"')

    def number(name: str) -> float | None:
        raw = _non_empty(env.get(name))
        if raw is None:
            return None
        try:
            v = float(raw)
        except ValueError:
            raise InvalidConfigError(f'{name} must be a number, got "{raw}"') from None
        return int(v) if v.is_integer() else v

    for setting, name in (("auto_refresh", "POPULUS_AUTO_REFRESH"), ("keep_completed", "POPULUS_KEEP_COMPLETED")):
        v = boolean(name)
        if v is not None:
            out[setting] = v
    interval = number("POPULUS_REFRESH_INTERVAL")
    if interval is not None:
        out["refresh_interval"] = _check_refresh_interval("POPULUS_REFRESH_INTERVAL", interval)
    stale = number("POPULUS_STALE_TIMEOUT")
    if stale is not None:
        out["stale_timeout"] = _check_stale_timeout("POPULUS_STALE_TIMEOUT", stale)
    priority = number("POPULUS_DEFAULT_PRIORITY")
    if priority is not None:
        out["default_priority"] = _check_priority("POPULUS_DEFAULT_PRIORITY", priority)
    version = _non_empty(env.get("POPULUS_VERSION_METHOD"))
    if version is not None:
        out["version_method"] = None if version in ("none", "null") else _check_version_method("POPULUS_VERSION_METHOD", version)
    return out


class PopulusConfig:
    """The process-wide configuration: ``config.jobs``, which starts from the
    ``POPULUS_*`` variables, read at its first use, else DataJoint's defaults.
    A bad variable raises InvalidConfigError naming it from that first use (and
    each one after, until it is fixed), not at import: importing the package
    cannot fail, so ``python -m populus.worker`` refuses the variable as it
    refuses its other bad options, and a program that never populates is not
    stopped by one."""

    __slots__ = ("_jobs", "_lock")

    def __init__(self, jobs: JobsConfig | None = None) -> None:
        """``jobs``: the settings to start from; None reads them from the environment at the first use."""
        self._jobs = jobs
        self._lock = threading.Lock()

    @property
    def jobs(self) -> JobsConfig:
        if self._jobs is None:
            # One JobsConfig for every thread: a setting assigned through it must not be lost to another made beside it.
            with self._lock:
                if self._jobs is None:
                    self._jobs = JobsConfig(**jobs_settings_from_env(os.environ))
        return self._jobs

    @jobs.setter
    def jobs(self, jobs: JobsConfig) -> None:
        if not isinstance(jobs, JobsConfig):
            raise InvalidConfigError(f"config.jobs must be a JobsConfig, got {type(jobs).__name__}")
        self._jobs = jobs


config = PopulusConfig()
