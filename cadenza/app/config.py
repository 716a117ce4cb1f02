"""Studio settings and serving limits, in one place so the CLI, the server and the tests agree."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cadenza.errors import CadenzaError
from cadenza.history import DEFAULT_ROOT

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; past these the studio answers with a clear error, never a crash."""

    max_upload_mb: float = 20.0  # each uploaded file
    max_upload_s: float = 600.0  # uploaded recordings (10 min)
    max_duration_s: float = 60.0  # generated audio
    max_steps: int = 200
    max_prompt_chars: int = 500
    max_notes_chars: int = 4000
    max_points: int = 4000  # breakpoints of a drawn dynamics curve
    body_timeout_s: float = 60.0  # a whole request body must arrive within this (a slow or stalled client is cut off)
    idle_timeout_s: float = 10.0  # and no gap between two of its chunks may be longer

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_body_bytes(self) -> int:
        """A whole request: up to three uploads plus the form fields."""
        return 3 * self.max_upload_bytes + 1024 * 1024

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StudioConfig:
    """How ``cadenza serve`` runs: where, with which model, how many generations at once."""

    host: str = "127.0.0.1"
    port: int = 7860
    model: str | None = None
    root: Path = DEFAULT_ROOT
    max_concurrent: int = 1
    queue: int = 8
    threads: int | None = None
    warmup: bool = True
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if not 1 <= self.max_concurrent <= 64:
            raise CadenzaError(f"--max-concurrent {self.max_concurrent} is out of range", "use 1 (the default) up to the number of CPU cores")
        if not 0 <= self.queue <= 10_000:
            raise CadenzaError(f"--queue {self.queue} is out of range", "use 0 (no waiting) up to a few dozen")
        if self.threads is not None:
            from cadenza.limits import check_threads

            check_threads(self.threads, "--threads")
        if not 0 <= self.port <= 65535:
            raise CadenzaError(f"--port {self.port} is out of range", "use a port between 1024 and 65535, e.g. 7860")
        object.__setattr__(self, "root", Path(self.root).expanduser())

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
