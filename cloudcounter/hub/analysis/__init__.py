"""Identity and liveness checks in live calls (hub side).

* :mod:`.policy`: pure decisions (which frames to analyse, alert debouncing, payloads);
* :mod:`.call`: one :class:`~.call.CallAnalysis` per answered segment, fed by the
  segment's media tap, analysing in the vision process pool;
* :mod:`.manager`: :class:`~.manager.AnalysisManager`, the hub resource (pool, calls,
  requests from the agent namespace, evidence frames);
* :mod:`.worker`: the pool's worker initializer.

This package's ``__init__`` imports nothing: the pool's spawned workers import
:mod:`.worker` and must not pay for the hub's imports. See docs/vision.md, "In the call".
"""
