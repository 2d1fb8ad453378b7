"""The project's Python: helpers of the modules in library/, the controller's filters and
the node-side programs, one package by concern (docs/design.md, "The spark_cluster package").

Nothing is imported here (nor in any subpackage's __init__): a node program pulls in only
what it names, stdlib only (pyroute2 for the netlink reader).
"""
