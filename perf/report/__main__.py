"""python -m perf.report path/to/results.json"""

from perf.report import main

raise SystemExit(main())
