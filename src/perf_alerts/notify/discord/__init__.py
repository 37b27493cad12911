"""Discord webhook delivery: payload building within Discord's limits, and a rate-limit-aware client."""

from perf_alerts.notify.discord.client import DeliveryResult, DiscordClient, backoff_delay
from perf_alerts.notify.discord.limits import validate_payload
from perf_alerts.notify.discord.ratelimit import Limits, MemoryRateLimits, RateLimitState, SharedRateLimits
from perf_alerts.notify.discord.payload import (
    AlertGroup,
    DiscordMessage,
    build_messages,
    build_resolved_edit,
    safe_username,
)

__all__ = [
    "AlertGroup",
    "DeliveryResult",
    "DiscordClient",
    "DiscordMessage",
    "Limits",
    "MemoryRateLimits",
    "RateLimitState",
    "SharedRateLimits",
    "backoff_delay",
    "build_messages",
    "build_resolved_edit",
    "safe_username",
    "validate_payload",
]
