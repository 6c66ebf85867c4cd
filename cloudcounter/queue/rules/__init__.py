"""The queue's rules as pure functions: command + current state + now -> new state + events.

No I/O, no asyncio, no clocks: every function takes ``now`` and returns an :class:`Outcome`
(the new :class:`QueueState` and the frozen :class:`Event` snapshots to deliver), or raises a
:class:`~cloudcounter.errors.CloudCounterError` with a code when the command is refused. The
rules are those of :mod:`cloudcounter.queue.dispatcher` and :mod:`cloudcounter.queue.takeover`
today; timers are stored deadlines (``offer_expires_at``, ``grace_until``, ``wrap_up_until``,
``excluded``, and the maximum wait from ``enqueued_at``) that :func:`due` lists and the
expiry commands apply. An agent's offer streak (``AgentRec.streak``) feeds routing's
``max_consecutive_offers``.
"""

from cloudcounter.queue.rules.core import (
    AgentRec,
    CallRec,
    Deadline,
    Event,
    Outcome,
    QueueState,
    RulesConfig,
    accept,
    agent_offline,
    callback_due,
    callback_places,
    agent_online,
    decline,
    due,
    end,
    enqueue,
    expire_callback,
    expire_exclusions,
    expire_grace,
    expire_offer,
    expire_wait,
    expire_wrap_up,
    grace_end,
    finish_wrap_up,
    grace_start,
    offer,
    request_callback,
    requeue,
    set_agent_status,
    take_over,
    waiting_view,
)

__all__ = ["AgentRec", "CallRec", "Deadline", "Event", "Outcome", "QueueState", "RulesConfig",
           "accept", "agent_offline", "agent_online", "callback_due", "callback_places",
           "decline", "due", "end", "enqueue", "expire_callback", "expire_exclusions",
           "expire_grace", "expire_offer", "expire_wait", "expire_wrap_up", "finish_wrap_up",
           "grace_end", "grace_start", "offer", "request_callback", "requeue",
           "set_agent_status", "take_over", "waiting_view"]
