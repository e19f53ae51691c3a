from afd.main import cli

cli()
