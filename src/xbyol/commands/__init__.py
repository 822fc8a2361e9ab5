"""One module per CLI command; each defines ``add_parser(subparsers)``; :data:`COMMANDS` lists them.

The CLI imports every command module to build its parser. The xbyol modules a command runs
with pull in torch, Flask and matplotlib, which take seconds to import, so each command imports
them inside its ``run`` function, when it runs, and ``xbyol --help`` and argument errors answer
at once: the one place in xbyol where its own modules are imported inside functions.
"""

from xbyol.commands import (
    concepts,
    config,
    datasets,
    dissect,
    eval,
    explain,
    explain_eval,
    map,
    maximize,
    report,
    search,
    serve,
    train,
)

# in the order ``xbyol --help`` lists them
COMMANDS = (concepts, config, datasets, dissect, eval, explain, explain_eval, map, maximize, report, search, serve, train)
