"""The notification pipeline: route → group → silence/inhibit → escalate → outbox → receivers.

`pipeline.Notifier` ties the steps together; each step lives in its own module.
"""
