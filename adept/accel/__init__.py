"""Speed only: several seeds in one batched computation (:mod:`~adept.accel.pack`), their world
models stacked (:mod:`~adept.accel.stacked`), and CUDA graphs (:mod:`~adept.accel.graphs`).

Nothing here changes what is computed, only how many kernels compute it. The algorithms below
never import this package: it wraps them. A method without a packed path here still trains in
a pack, its own work done seed by seed.
"""
