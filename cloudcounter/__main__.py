from cloudcounter.hub.cli import main

raise SystemExit(main())
