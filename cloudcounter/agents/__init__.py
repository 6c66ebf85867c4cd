"""cloudcounter.agents: the staff who work the counter — agents, auditors and admins.

Accounts, skills and sign-in live here (:mod:`cloudcounter.agents.accounts`); an agent's
availability during the day (available, offered, busy, wrap-up, away) is the queue's
business (:mod:`cloudcounter.queue.model`).
"""
