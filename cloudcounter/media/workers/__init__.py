"""Media worker processes: the hub's calls carried by a pool of processes (issue 16).

* :mod:`.protocol`: the internal protocol (docs/media.md, "Media workers"): messages,
  the length-prefixed JSON frame codec and a :class:`~.protocol.Channel` over a Unix socket.
* :mod:`.host`: the worker side, a host for :class:`~cloudcounter.media.call.CallMedia`.
* :mod:`.remote`: the hub side, :class:`~.remote.RemoteCallMedia` (a proxy with the part of
  CallMedia's interface the hub's gateway uses) and :class:`~.remote.RemoteTap`.
* :mod:`.placement`: which worker takes a new call (pure).
* :mod:`.supervisor`: starts, watches and restarts local workers; Redis-registered ones.
* :mod:`.gateway`: :class:`~.gateway.WorkerMedia`, the hub's gateway over the workers.
"""
