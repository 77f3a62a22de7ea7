"""IPVS data plane: the kernel's virtual servers over generic netlink.

- ``model``: what a table holds (services, real servers, counters, the sync daemon,
  timeouts) as frozen values, with keepalived's rules for kernel values;
- ``messages``: the IPVS generic netlink messages, built and read (no I/O);
- ``netlink``: ``IpvsTable``, one network namespace's table: dump, add, edit, delete,
  flush, timeouts, sync daemon;
- ``reconcile``: ``plan`` (what we want against what the kernel holds, for the
  services we own) and ``apply``.

Tested against a real kernel in a VM: tests/integration/test_ipvs_vm.py.
"""
