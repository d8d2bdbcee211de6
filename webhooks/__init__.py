"""Signed webhooks (Standard Webhooks): check an endpoint's address, send due deliveries.

The sender sits below tasks, flows and the API so each can use it: the pipeline sends an
export's deliveries right after it ends (best effort), the maintenance flow sends whatever is
due (retries), the API sends a test event and re-sends on request.

``urls``     ``check_url``: refuses loopback, link-local, private and other non-public
             addresses unless ``EXPORTFLOW_WEBHOOK_ALLOW_PRIVATE_URLS`` is set.
``deliver``  ``deliver_due``: one attempt per due delivery, signed, outcome recorded,
             retried with exponential backoff (``retry_delay``).
"""

from __future__ import annotations

from webhooks.deliver import Attempt, deliver_due, retry_delay, sign
from webhooks.urls import check_url

__all__ = ["Attempt", "check_url", "deliver_due", "retry_delay", "sign"]
