"""The serving runtime: its environment, image contract, parallel layout, profiles,
start-up phases, memory guard, inventory rules and preflight, and the node-side logic of
the pre-start check, the stall watchdog and the rendezvous guard."""
