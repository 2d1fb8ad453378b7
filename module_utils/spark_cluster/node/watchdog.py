"""The stall watchdog of the serving pair (check, agent, restart, prepare, validate), as a program:
``python3 -m spark_cluster.node.watchdog ...`` (the logic: ``spark_cluster.runtime.watchdog``)."""

import sys

from ..runtime.watchdog import main

if __name__ == "__main__":
    sys.exit(main())
