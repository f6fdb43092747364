"""CLI extensions per domain: each module here defines `register(cli: click.Group) -> None`.

cli.py imports every module in this package and calls its `register`, so a domain adds commands
(`export`, `restore`, `demo broker`, ...) without editing cli.py.
"""
