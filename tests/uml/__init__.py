"""Run kernel-marked tests inside User Mode Linux kernels.

Why: kstream's kernel path needs AF_ALG, which many CI hosts (containers, sandboxed kernels) do
not offer, and whose behaviour differs between kernel releases. User Mode Linux runs a real
Linux kernel as an ordinary process with the host's filesystem as its root (hostfs), so the same
interpreter, virtualenv and test files run inside it, and results come back through a file.

- `harness`: finds kernels, writes the init script, boots with a timeout.
- `report`: the per-test report the inner pytest writes, and how it is read back.
- `plugin`: the pytest side (one host item per test and kernel); hooked up by tests/conftest.py.

`.ci/install-uml.sh` installs the kernels.
"""
