"""Administration: the operations behind the admin console, its HTTP API and the CLI.

One function per action (:mod:`.users`, :mod:`.services`, :mod:`.customers`,
:mod:`.webhooks`): it validates, changes the database and writes its ``admin.*`` security
event in the same transaction (nothing half-done, nothing unlogged). The HTTP handlers
(:mod:`cloudcounter.hub.admin_api` and friends) and the CLI only parse their input into
the schemas of :mod:`.schemas` and call these.
"""
