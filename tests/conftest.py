"""Test-wide settings.

Under CI (the `CI` environment variable is set) hypothesis draws its examples
deterministically, so a run's result depends on the code alone; locally it keeps exploring
new random examples. Either way no deadline: the machine is shared and timing is not what
the property tests check.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
