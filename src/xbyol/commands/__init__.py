"""One module per CLI command; each defines ``add_parser(subparsers)``; :data:`COMMANDS` lists them."""

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
