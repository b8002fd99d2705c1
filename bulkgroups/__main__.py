from bulkgroups.cli.main import main

main()
