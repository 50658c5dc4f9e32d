"""Board-level gateware: UART bridge and the top-levels for the supported boards."""
