"""The rendezvous guard of the serving pair (spark-runtime-watchdog.service), as a program:
``python3 -m spark_cluster.node.rendezvous ...`` (the logic: ``spark_cluster.runtime.rendezvous``)."""

import sys

from ..runtime.rendezvous import main

if __name__ == "__main__":
    sys.exit(main())
