from rktnetes.cli.main import main

raise SystemExit(main())
