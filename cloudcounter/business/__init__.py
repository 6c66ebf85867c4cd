"""cloudcounter.business: the counter business done over video.

* :mod:`.scripts`: service scripts (versioned steps, as data) and their validation;
* :mod:`.risk`: the fraud-risk engine, a pure function over a call's signals with rules
  and weights as versioned data;
* :mod:`.flow`: one call's flow (steps, the customer's prompts, signals, approval, the
  wrap-up guard) as a state machine without I/O;
* :mod:`.store`: the database side (script and rule versions, steps, confirmations,
  approvals, account changes);
* :mod:`.service`: :class:`~.service.FlowService`, the flows of the calls in progress,
  talking to the hub through a narrow port.

This package never imports the hub or the signalling layer.
"""
