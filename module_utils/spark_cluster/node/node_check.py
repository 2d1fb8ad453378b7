"""The node check for node exporter's textfile collector (spark-node-check.timer), as a program:
``python3 -m spark_cluster.node.node_check ...`` (the logic: ``spark_cluster.monitoring.node_check``)."""

import sys

from ..monitoring.node_check import main

if __name__ == "__main__":
    sys.exit(main())
