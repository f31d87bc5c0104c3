"""Floor 1: the numeric backend. Structured operators (identity, diagonal, Kronecker, Toeplitz, stacks,
products), the memory guard, threaded writes and compiled kernels. Knows no layer and no network."""
