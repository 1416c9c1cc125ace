from sdm_async.cli import main

raise SystemExit(main())
