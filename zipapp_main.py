"""The __main__.py of oculus.pyz: parse the command line from inside the archive, then run through shiv.

build_zipapp.py puts this file in place of shiv's own __main__.py. shiv's bootstrap imports about 36
modules and checks the unpacked copy of the bundle at every start, which takes longer than Python's own
start-up. `--help`, `version` and usage errors need none of it, so they finish here. Every other command
goes on to the bootstrap, which imports Oculus again from the unpacked copy.
"""

import sys

ARCHIVE_PACKAGES = sys.path[0] + "/site-packages"  # sys.path[0] is the .pyz file itself

sys.path.insert(0, ARCHIVE_PACKAGES)
from oculus import cli  # noqa: E402  (zipimport reads it from the archive)

_, status = cli.parse_and_finish_early(sys.argv[1:])
if status is not None:
    sys.exit(status)

# The command runs from the unpacked copy, so no module may stay bound to the archive.
sys.path.remove(ARCHIVE_PACKAGES)
for name in [name for name in sys.modules if name == "oculus" or name.startswith("oculus.")]:
    del sys.modules[name]

import _bootstrap  # noqa: E402  (shiv's bootstrap, at the root of the archive)

_bootstrap.bootstrap()
