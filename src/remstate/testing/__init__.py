"""Test tooling: a real kube-apiserver and etcd on loopback, and pytest fixtures for it.

Nothing in the library imports this package. It is shipped so that people can
test their own agents against a real API server the way remstate tests
itself (``remstate.testing.pytest_plugin``), and so that the tests, ``make
cluster`` and the benchmarks share one harness. Unlike the library, it may
import ``kubernetes`` anywhere, and it needs ``cryptography`` (the
``testing`` extra) to make its certificates.

This module imports none of its submodules: ``python -m
remstate.testing.controlplane`` must be the first import of that module.
"""
