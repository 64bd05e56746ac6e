from vipcli.cli.main import run

run()
