"""Benchmarks of remstate against its peers, on a real kube-apiserver and etcd.

Run ``python -m bench [--quick] [--json out.json]`` from the repository root.

The constraint every measurement here lives under: the machine is small (2
cores) and noisy, so no absolute figure means much from one run to the next.
Every figure is a ratio against a baseline measured in the same run, close in
time to it (interleaved where the measurement allows), and every measurement
is bounded both by a count and by a time. Nothing here is a test: timings
never decide pass or fail.
"""
