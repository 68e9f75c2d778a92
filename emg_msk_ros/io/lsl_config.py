"""Which configuration liblsl runs with, and the check that it really loaded it.

liblsl reads its configuration once per process, at the first call that needs it, from the file
named by ``LSLAPICFG`` (else ``lsl_api.cfg`` in the working directory, ``~/lsl_api/`` or
``/etc/lsl_api/``). A missing or unparsable file is not an error: liblsl logs it and goes on with
its defaults, which discover streams by multicast and broadcast on the local network. So before
any stream is resolved, :func:`import_pylsl` makes liblsl load its configuration while reading
what liblsl logs about it (on stderr, which is passed on), and refuses to go on when
``LSLAPICFG`` is set but liblsl did not load that very file.

The package ships ``config/lsl_api.cfg``, which keeps LSL on this machine (loopback only); every
test, benchmark and demo that touches LSL runs with it (:func:`use_loopback`).
"""

from __future__ import annotations

import importlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from emg_msk_ros.paths import config_path

ENV = "LSLAPICFG"
LOOPBACK_FILE = "lsl_api.cfg"

_LOADED = re.compile(r"Configuration loaded from (.+?)\s*$", re.MULTILINE)
_PROBLEM = re.compile(r"^.*\b(?:ERR|WARN)\|\s*(.+?)\s*$", re.MULTILINE)


class LslConfigError(RuntimeError):
    """liblsl is not running with the configuration it was told to use."""


@dataclass(frozen=True)
class LoadedConfig:
    """What liblsl said when it loaded its configuration in this process."""

    path: Path | None  # the file it loaded; None: its built-in (LAN) defaults
    problems: tuple[str, ...]  # errors and warnings it logged while loading

    def describe(self) -> str:
        """One line for logs and diagnostics."""
        return str(self.path) if self.path else "liblsl defaults (LAN discovery)"


_loaded: LoadedConfig | None = None


def loopback_config() -> Path:
    """The package's loopback-only LSL configuration file."""
    return config_path(LOOPBACK_FILE)


def use_loopback() -> str | None:
    """Point ``LSLAPICFG`` at the loopback config unless it is set; a note when it was set here.

    Call before anything in the process uses pylsl (and before starting processes that should
    inherit it).
    """
    if os.environ.get(ENV):
        return None
    os.environ[ENV] = str(loopback_config())
    return f"{ENV} was unset: set to {os.environ[ENV]} (LSL stays on this machine)"


def _read_liblsl_log(load) -> str:
    """Run ``load()`` with file descriptor 2 captured; pass the text on to stderr, return it."""
    with tempfile.TemporaryFile() as log:
        saved = os.dup(2)
        try:
            os.dup2(log.fileno(), 2)
            load()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        text = log.read()
    if text:
        os.write(2, text)
    return text.decode("utf-8", "replace")


def _load(pylsl) -> LoadedConfig:
    # A StreamInfo is the first use that needs the configuration; it opens no socket.
    text = _read_liblsl_log(lambda: pylsl.StreamInfo("emg_msk_config_probe", "EMG", 1,
                                                      source_id="emg_msk_config_probe"))
    problems = tuple(_PROBLEM.findall(text))
    found = _LOADED.search(text)
    if found is None and "Loaded default config" not in text:
        raise LslConfigError(
            "liblsl had loaded its configuration before emg_msk_ros could check which one: "
            f"use pylsl only through emg_msk_ros.io.lsl_config.import_pylsl(){_listed(problems)}")
    return LoadedConfig(Path(found.group(1)) if found else None, problems)


def _listed(problems: tuple[str, ...]) -> str:
    return f" (liblsl said: {'; '.join(problems)})" if problems else ""


def import_pylsl():
    """pylsl, once liblsl has loaded its configuration and, if ``LSLAPICFG`` names a file,
    that very file (else :class:`LslConfigError`). ImportError when pylsl is not installed."""
    global _loaded
    pylsl = importlib.import_module("pylsl")
    if _loaded is None:
        _loaded = _load(pylsl)
    wanted = os.environ.get(ENV)
    if wanted and (_loaded.path is None
                   or os.path.realpath(_loaded.path) != os.path.realpath(wanted)):
        raise LslConfigError(
            f"liblsl is not running with {ENV}={wanted}: it loaded {_loaded.describe()}"
            f"{_listed(_loaded.problems)}; refusing to resolve LSL streams")
    return pylsl


def loaded() -> LoadedConfig | None:
    """What liblsl loaded in this process (None until :func:`import_pylsl` ran)."""
    return _loaded
