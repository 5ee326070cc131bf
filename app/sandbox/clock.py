"""The sandbox's notion of now: real UTC time plus an offset that tests move forward instead of sleeping."""

from datetime import UTC, datetime, timedelta


class SandboxClock:
    def __init__(self) -> None:
        self._offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self._offset += timedelta(seconds=seconds)
        return self.now()

    def reset(self) -> None:
        self._offset = timedelta()


def iso(moment: datetime) -> str:
    """Codat's DateTime: ISO 8601 in UTC with a trailing Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
