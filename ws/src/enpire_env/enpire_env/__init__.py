"""EN: the simulated SO-101 PushT cell, automatic reset, verification and safety limits."""
