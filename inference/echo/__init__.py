"""Echo: preprocessing to EchoNet-Dynamic's input, beat detection and cine playback timing (no Qt)."""
