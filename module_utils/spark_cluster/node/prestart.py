"""The pre-start check of the serving unit (ExecStartPre), as a program:
``python3 -m spark_cluster.node.prestart ...`` (the logic: ``spark_cluster.runtime.prestart``)."""

import sys

from ..runtime.prestart import main

if __name__ == "__main__":
    sys.exit(main())
