from pimcast.cli import main

raise SystemExit(main())
