"""Floor 3: conventions, typed Jacobians (Space, Jacobian), the network and Damadi's Algorithm 1.
Imports backend/ and layers/ only."""
