"""The workers' weights fan-out from the head's hub cache (roles/hf_cache), as a program:
``python3 -m spark_cluster.node.fanout ...`` (the logic: ``spark_cluster.cache.fanout``)."""

import sys

from ..cache.fanout import main

if __name__ == "__main__":
    sys.exit(main())
