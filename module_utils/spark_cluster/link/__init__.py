"""The QSFP rails: ConnectX-7 and RoCE discovery, netlink, what configures the rails,
cabling discovery, link probes and their layout, the collective probe, interface pinning,
the cluster firewall."""
