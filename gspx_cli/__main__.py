from gspx_cli.cli import main

main()
