"""``kstream bench``: how fast each AES-CTR implementation is on this machine, and how
kstream's whole-file paths compare with ``openssl enc`` and ``cp``.

Why it exists: the choice between the kernel and OpenSSL, and the performance goals of the
streaming and parallel paths, rest on measurements that differ wildly between machines (AES
instructions or not, a dedicated ``ctr(aes)`` driver or only the generic template, real
hardware or User Mode Linux). This command makes those measurements reproducible by anyone.

Two modes:

* in memory (the default, :mod:`kstream.bench.memory`), in the spirit of ``kcapi-speed``:
  every backend, every kernel ``ctr(aes)`` driver listed in ``/proc/crypto``, every way data
  can enter the kernel (``sendmsg``, ``splice`` from a pipe, ``sendfile`` from a memory
  file), key sizes and chunk sizes; one *op* is one chunk through one long-lived cipher
  stream (opening the stream is not timed), so the per-op cost includes the system calls the
  kernel path needs per chunk;
* ``--files`` (:mod:`kstream.bench.files`): whole files side by side with ``openssl enc``
  and ``cp``, many files against shell loops, and start-up against ``python -c pass``, as
  ratios measured in the same rounds. It states no goals: those are the project's, judged
  from this output by the developer script ``.ci/goals.py``.

Numbers are medians over ``--repeat`` runs after a warm-up run, because these machines are
noisy (shared CPUs, frequency scaling); a single run can be off by tens of percent.

The modules import in one direction only, in the order ``tests/test_house.py`` gives.

This package file imports nothing, so that the command line can import
:mod:`kstream.bench.cli` on every run to build its parser without loading the measuring code.
"""
