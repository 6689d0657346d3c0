"""genrekit train (not implemented yet)."""
HELP = "(coming)"


def add_arguments(p):
    pass


def run(args) -> int:
    from ..errors import GenrekitError

    raise GenrekitError("not implemented yet")
