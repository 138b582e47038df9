"""Pure domain layer: plain data in, plain data out, no I/O."""
