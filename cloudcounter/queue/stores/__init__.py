"""Backends of :class:`cloudcounter.queue.transitions.QueueTransitions`."""
