from sched_search.cli import main

raise SystemExit(main())
