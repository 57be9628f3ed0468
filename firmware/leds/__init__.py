"""Human feedback at the door: green/red/amber LEDs, the buzzer, the door relay."""
