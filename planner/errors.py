"""The one error type for bad user input. The CLI turns it into a single line and exit code 2."""


class PlannerInputError(ValueError):
    """Bad input from a user: a file, a column, a field or a flag. The message names which, and what is wrong."""
