"""One exception type for mistakes a user can fix; the CLI prints its message and exits 2."""


class KdlabError(Exception):
    """A problem with the user's input: the message names the problem and what to do."""
