"""The cache checks run on a node (check-exports FILE: the rendered NFS export), as a program:
``python3 -m spark_cluster.node.cache ...`` (the logic: ``spark_cluster.cache.rules``)."""

import sys

from ..cache.rules import main

if __name__ == "__main__":
    sys.exit(main())
