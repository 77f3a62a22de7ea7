"""IPVS data plane over netlink."""
