"""`StepResult`: what every perf-alerts tool returns to an agent.

A small pydantic model (success, status, data, error). CrewAI is told about it through
the tools' `result_schema`, so the agent reads compact JSON (`model_dump_json`), never a
Python repr; `str(result)` is the same JSON for any other caller.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Status = Literal["ok", "fail", "skip", "uncertain"]
STATUSES: tuple[str, ...] = ("ok", "fail", "skip", "uncertain")


def jsonable(x: Any) -> Any:
    """Make `x` plain JSON (dicts, lists, str, finite floats, ints, bools, None)."""
    if x is None or isinstance(x, (str, bool, int)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        try:
            return jsonable(x.item())
        except Exception:
            pass
    if hasattr(x, "to_dict") and callable(x.to_dict):
        return jsonable(x.to_dict())
    if hasattr(x, "value") and isinstance(getattr(x, "value"), (str, int)):  # enums
        return x.value
    return str(x)


def _redacted(x: Any) -> Any:
    """Secrets (webhook URLs, tokens) never reach an agent, wherever they hide in the data."""
    from perf_alerts.notify.redact import redact

    if isinstance(x, str):
        return redact(x) if ("/" in x or "=" in x or len(x) >= 6) else x
    if isinstance(x, dict):
        return {k: _redacted(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_redacted(v) for v in x]
    return x


class StepResult(BaseModel):
    """The outcome of one tool step: `ok`, `fail` (with `error`), `skip` or `uncertain`."""

    model_config = ConfigDict(extra="forbid")

    success: bool
    status: Status
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None

    @field_validator("data", mode="before")
    @classmethod
    def _clean(cls, v: Any) -> dict[str, Any]:
        if v is None:
            return {}
        if not isinstance(v, dict):
            v = {"value": v}
        return _redacted(jsonable(v))

    @field_validator("error", mode="before")
    @classmethod
    def _clean_error(cls, v: Any) -> str | None:
        from perf_alerts.notify.redact import redact

        return None if v is None else redact(str(v))

    # -- constructors --------------------------------------------------------------
    @classmethod
    def ok(cls, data: dict[str, Any] | None = None, **fields: Any) -> "StepResult":
        return cls(success=True, status="ok", data={**(data or {}), **fields})

    @classmethod
    def fail(cls, error: str, data: dict[str, Any] | None = None, **fields: Any) -> "StepResult":
        from perf_alerts.notify.redact import redact

        return cls(success=False, status="fail", error=redact(str(error)), data={**(data or {}), **fields})

    @classmethod
    def skip(cls, reason: str, data: dict[str, Any] | None = None, **fields: Any) -> "StepResult":
        """Nothing was done, on purpose (e.g. delivery not available): not a failure."""
        from perf_alerts.notify.redact import redact

        return cls(success=True, status="skip", error=redact(str(reason)), data={**(data or {}), **fields})

    @classmethod
    def uncertain(cls, reason: str, data: dict[str, Any] | None = None, **fields: Any) -> "StepResult":
        """Done, but the answer may not hold (e.g. too little data)."""
        from perf_alerts.notify.redact import redact

        return cls(success=True, status="uncertain", error=redact(str(reason)),
                   data={**(data or {}), **fields})

    # -- views ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        """Compact JSON: what the agent sees."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    def __str__(self) -> str:
        return self.to_json()
