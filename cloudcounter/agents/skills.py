"""Skills of agents that no single service requires.

A service names the skill it needs (``service_types.required_skill``); these skills are
about the agent, not the service: ``senior`` agents take the calls of customers whose
record says high risk (:func:`cloudcounter.queue.routing.eligible`).
"""

SENIOR = "senior"
GENERAL_SKILLS = frozenset({SENIOR})
