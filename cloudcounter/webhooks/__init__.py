"""cloudcounter.webhooks: events for other bank systems, signed and delivered at least once
from a durable outbox (docs/operations.md, "Webhooks").

* :mod:`.events` — the event types, the envelope, the events derived from a call's timeline;
* :mod:`.outbox` — publishing, in the caller's transaction;
* :mod:`.delivery` — the delivery worker (retries, back-off, the delivery log);
* :mod:`.subscriptions` — administrators' subscriptions;
* :mod:`.signing` — HMAC signatures (and how a receiver checks them).
"""

from cloudcounter.webhooks.events import EventType, NewEvent
from cloudcounter.webhooks.outbox import WebhookPublisher, publish

__all__ = ["EventType", "NewEvent", "WebhookPublisher", "publish"]
