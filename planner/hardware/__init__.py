"""Plans on real hardware: cost ledgers, GPU profiles, training and serving memory, roofline serving time, break-even."""
