"""The node-side programs, each run as ``python3 -m spark_cluster.node.<name>`` with the
directory above the package on PYTHONPATH (systemd units and the roles' commands). Each
holds only the entry point; the logic lives with its concern."""
