from oculus.cli import main

raise SystemExit(main())
