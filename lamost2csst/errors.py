"""The one error type for mistakes that are the user's to fix.

Bad arguments, unusable inputs, an output that belongs to another run: every layer raises
:class:`InputError` with a message that says what to fix, and the job command lines turn it
into ``python -m jobs.<name>: error: ...`` and exit status 2. This module imports nothing,
so every layer may import it.
"""


class InputError(ValueError):
    """Input, arguments or an existing output the user must fix; the message says how."""
