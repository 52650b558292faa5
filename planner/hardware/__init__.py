"""Plans on real hardware: cost ledgers, GPU profiles, training and serving memory, roofline time, break-even."""
