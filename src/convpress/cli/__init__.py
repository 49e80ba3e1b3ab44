"""The ``convpress`` command line: one module per subcommand, each with ``main(argv=None) -> int``."""
