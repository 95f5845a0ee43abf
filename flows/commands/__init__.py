"""One module per `simpo` command: `add_arguments(parser)` and `main(args) -> int`."""
