"""HTTP out: one transport, its retry and status policy, the pacer, quota headers and sign-in."""
